"""A padding-free forward for BERT-family encoders: every row's tokens in one packed matrix.

A padded batch computes every linear layer on rows x longest tokens, so a batch of rows that
arrived together (sync requests of random lengths) spends most of its time on padding: 2.7x
the real tokens for 8 random rows of the benchmark's mixed texts. Here the tokens of all rows
are concatenated into one (tokens x hidden) matrix, so the linear layers, which are nearly all
the work, see only real tokens and one large matrix however the lengths mix. Only attention,
which must see each row on its own, is scattered into a padded (rows x longest) layout and
gathered back; its cost is small next to the linear layers at embedding-model lengths.
This is the CPU counterpart of what TEI does on GPUs with variable-length flash attention.

The model's own modules do the rest (embeddings, dense layers, activation, LayerNorm), so the
numbers match the padded forward to float rounding. The query/key/value weights are fused
into one matrix whose slices become the original parameters, so no weight is stored twice.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from worker.packed.fused_linears import fuse_linears
from worker.packed.rows import GROUP_RATIO, PackedRows, RowGroup, RowGroups, pool_packed  # noqa: F401 (pool_packed: re-exported)

# model_type -> first position id. RoBERTa-style models number positions after padding_idx.
_POSITION_START = {"bert": None, "roberta": "padding", "xlm-roberta": "padding"}


def unsupported_reason(model) -> str | None:
    """Why `model` cannot run packed (None when it can): only plain BERT-family encoders can."""
    config = model.config
    if config.model_type not in _POSITION_START:
        return f"model type {config.model_type!r} is not a BERT-family encoder"
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return f"position_embedding_type {config.position_embedding_type!r}"
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return "decoder or cross-attention configuration"
    needed = ("embeddings", "encoder")
    if not all(hasattr(model, name) for name in needed):
        return "no embeddings/encoder modules"
    return None


class PackedEncoder:
    """Runs a loaded BERT-family `model` on packed rows; call from inside inference mode."""

    def __init__(self, model, exact_groups: bool = False):
        """`exact_groups`: attention per group of one exact length (no padding), for the batch-invariant forward."""
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"cannot pack this model: {reason}")
        self.model = model
        self.group_ratio = 1.0 if exact_groups else GROUP_RATIO
        config = model.config
        self.heads = config.num_attention_heads
        self.hidden = config.hidden_size
        self.head_dim = self.hidden // self.heads
        start = _POSITION_START[config.model_type]
        self.position_offset = (config.pad_token_id + 1) if start == "padding" else 0
        attentions = [layer.attention.self for layer in model.encoder.layer]
        self._qkv = [fuse_linears(a.query, a.key, a.value) for a in attentions]

    def forward(self, packed: PackedRows, pause: Callable[[], None] | None = None) -> torch.Tensor:
        """Last hidden state for every real token: (tokens x hidden). `pause()` runs between layers."""
        embeddings = self.model.embeddings
        hidden = embeddings(input_ids=packed.ids[None], position_ids=(packed.positions + self.position_offset)[None],
                            token_type_ids=torch.zeros_like(packed.ids)[None])[0]
        layout = _AttentionLayout(packed, self.group_ratio)
        for layer, (weight, bias) in zip(self.model.encoder.layer, self._qkv):
            qkv = F.linear(hidden, weight, bias)
            context = layout.attend(qkv, self.heads, self.head_dim)
            attended = layer.attention.output(context, hidden)
            hidden = layer.output(layer.intermediate(attended), attended)
            if pause is not None:
                pause()
        return hidden


class _AttentionLayout(RowGroups):
    """Bidirectional attention for packed rows, per group of similar length (worker/packed/rows.py)."""

    def attend(self, qkv: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
        parts = [_attend(group, qkv, heads, head_dim) for group in self.groups]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def _attend(group: RowGroup, qkv: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """One group's attention: fused query/key/value in, (tokens x hidden) out; padded keys masked."""
    q, k, v = group.grid(qkv).view(group.rows, group.longest, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=group.key_mask)
    return group.ungrid(out.transpose(1, 2).reshape(group.rows, group.longest, heads * head_dim))

