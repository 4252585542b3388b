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

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

# model_type -> first position id. RoBERTa-style models number positions after padding_idx.
_POSITION_START = {"bert": None, "roberta": "padding", "xlm-roberta": "padding"}


@dataclass
class PackedRows:
    """Rows concatenated: token ids, each token's position and row, and where each row starts."""

    ids: torch.Tensor        # (tokens,)
    positions: torch.Tensor  # (tokens,) position within its row
    row_of: torch.Tensor     # (tokens,) index of the (sorted) row each token belongs to
    starts: torch.Tensor     # (rows,) index of each sorted row's first token
    lengths: torch.Tensor    # (rows,) sorted longest first
    order: torch.Tensor      # (rows,) the caller's row index of each sorted row

    @classmethod
    def build(cls, rows: list[list[int]], device: torch.device) -> "PackedRows":
        """Pack `rows` longest first (attention groups runs of similar length; see _AttentionLayout)."""
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        rows = [rows[i] for i in order]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        total = int(lengths.sum())
        starts = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        row_of = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        positions = np.arange(total, dtype=np.int64) - starts[row_of]
        ids = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=total)
        as_tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        return cls(as_tensor(ids), as_tensor(positions), as_tensor(row_of), as_tensor(starts),
                   as_tensor(lengths), as_tensor(np.asarray(order, dtype=np.int64)))

    def unsort(self, pooled: torch.Tensor) -> torch.Tensor:
        """Per-row results back in the caller's order."""
        return torch.empty_like(pooled).index_copy_(0, self.order, pooled)


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

    def __init__(self, model):
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"cannot pack this model: {reason}")
        self.model = model
        config = model.config
        self.heads = config.num_attention_heads
        self.hidden = config.hidden_size
        self.head_dim = self.hidden // self.heads
        start = _POSITION_START[config.model_type]
        self.position_offset = (config.pad_token_id + 1) if start == "padding" else 0
        self._qkv = [_fuse_qkv(layer.attention.self) for layer in model.encoder.layer]

    def forward(self, packed: PackedRows, pause: Callable[[], None] | None = None) -> torch.Tensor:
        """Last hidden state for every real token: (tokens x hidden). `pause()` runs between layers."""
        embeddings = self.model.embeddings
        hidden = embeddings(input_ids=packed.ids[None], position_ids=(packed.positions + self.position_offset)[None],
                            token_type_ids=torch.zeros_like(packed.ids)[None])[0]
        layout = _AttentionLayout(packed)
        for layer, (weight, bias) in zip(self.model.encoder.layer, self._qkv):
            qkv = F.linear(hidden, weight, bias)
            context = layout.attend(qkv, self.heads, self.head_dim)
            attended = layer.attention.output(context, hidden)
            hidden = layer.output(layer.intermediate(attended), attended)
            if pause is not None:
                pause()
        return hidden


class _AttentionLayout:
    """Attention for packed rows, in groups of similar length each padded to its own longest row.

    Padded attention costs rows x longest^2 per group; one group for a batch of mixed lengths
    (a 165-token row among 25-token ones) made attention a third of the whole forward. Rows
    come sorted longest first (PackedRows.build), so a group is a run of rows, hence a run of
    tokens, and a new one starts where a row is under GROUP_RATIO of its group's longest.
    """

    def __init__(self, packed: PackedRows):
        lengths = packed.lengths.tolist()
        self.groups: list[_Group] = []
        first = start = 0
        for i in range(1, len(lengths) + 1):
            if i == len(lengths) or lengths[i] < GROUP_RATIO * lengths[first]:
                self.groups.append(_Group(packed, first, i, start, lengths[first:i]))
                first, start = i, start + sum(lengths[first:i])

    def attend(self, qkv: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
        parts = [group.attend(qkv, heads, head_dim) for group in self.groups]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


# A row shorter than this share of its group's longest row starts a new group: padded attention
# then wastes under 1/GROUP_RATIO^2 of a group's work, for a few more (cheap) calls per layer.
GROUP_RATIO = 0.7


class _Group:
    """Rows [first, last) of a PackedRows, i.e. tokens [start, start + sum(lengths)), attended as one padded grid."""

    def __init__(self, packed: PackedRows, first: int, last: int, start: int, lengths: list[int]):
        self.rows, self.longest = last - first, lengths[0]
        self.start, self.tokens = start, sum(lengths)
        self.even = lengths[-1] == self.longest  # sorted longest first: no padding, a plain reshape will do
        if not self.even:  # each token's cell in the grid, from the row and position PackedRows already has
            span = slice(start, start + self.tokens)
            self.slots = (packed.row_of[span] - first) * self.longest + packed.positions[span]
            keys = torch.arange(self.longest, device=packed.ids.device)[None, :] < packed.lengths[first:last, None]
            self.mask = keys[:, None, None, :]  # (rows, 1, 1, longest): attend to real keys only

    def attend(self, qkv: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
        mine = qkv[self.start:self.start + self.tokens]
        if self.even:
            q, k, v = mine.view(self.rows, self.longest, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(q, k, v)
            return out.transpose(1, 2).reshape(self.tokens, heads * head_dim)
        grid = mine.new_zeros(self.rows * self.longest, mine.shape[1]).index_copy_(0, self.slots, mine)
        q, k, v = grid.view(self.rows, self.longest, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        out = out.transpose(1, 2).reshape(self.rows * self.longest, heads * head_dim)
        return out.index_select(0, self.slots)


def _fuse_qkv(attention) -> tuple[torch.Tensor, torch.Tensor]:
    """One (3*hidden x hidden) matrix for query, key and value; the originals become views of it."""
    parts = (attention.query, attention.key, attention.value)
    weight = torch.cat([p.weight.detach() for p in parts])
    bias = torch.cat([p.bias.detach() for p in parts])
    size = parts[0].weight.shape[0]
    for i, part in enumerate(parts):  # share storage: the padded forward still works, memory is not doubled
        part.weight.data = weight[i * size:(i + 1) * size]
        part.bias.data = bias[i * size:(i + 1) * size]
    return weight, bias


def pool_packed(mode: str, hidden: torch.Tensor, packed: PackedRows) -> torch.Tensor:
    """Sentence-transformers pooling over packed tokens: one (rows x hidden) tensor."""
    if mode == "cls":
        return hidden.index_select(0, packed.starts)
    if mode == "lasttoken":
        return hidden.index_select(0, packed.starts + packed.lengths - 1)
    rows = len(packed.lengths)
    if mode == "max":
        out = hidden.new_full((rows, hidden.shape[1]), torch.finfo(hidden.dtype).min)
        return out.scatter_reduce(0, packed.row_of[:, None].expand_as(hidden), hidden, "amax")
    summed = hidden.new_zeros(rows, hidden.shape[1]).index_add_(0, packed.row_of, hidden)
    counts = packed.lengths.to(hidden.dtype)[:, None]
    return summed / (counts.sqrt() if mode == "mean_sqrt_len" else counts)
