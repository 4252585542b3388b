"""A padding-free forward for Qwen3-family decoders (Qwen3, Qwen2, Llama): every row's tokens in one matrix.

The decoder counterpart of worker/packed/encoder.py. The linear layers (query/key/value, output, MLP),
the RMSNorms and the rotary embedding run on one (tokens x hidden) matrix of real tokens only;
rotary positions restart at each row (RoPE is relative, so this equals the padded forward's
left-padded positions to rounding); attention is causal within each row, by one of the kernels
below; and a row's last token (what last-token pooling and the reranker read) is found from
where each row ends, not from padding.

Attention kernels (EMBED_ATTENTION):

- `sdpa_groups`: rows in groups of similar length, each group one padded grid for
  `scaled_dot_product_attention(is_causal=True)` (worker/packed/rows.py). Every row starts at
  column 0 of its grid, so causal attention needs no mask: a real query never sees the padding
  after it. Works on every device; the only one that pays on a CPU. Not one block-diagonal mask
  over all packed tokens, which costs tokens^2 (what transformers builds from packed
  `position_ids` for SDPA/eager).
- `flex`: FlexAttention over all packed tokens with a causal document mask (a BlockMask, so
  blocks outside every row are skipped). Fused only under torch.compile, so on CUDA it is
  compiled lazily on first use (bucketed lengths); without CUDA it runs unfused (tests only).
- `flash_varlen`: flash-attn's `flash_attn_varlen_func` over cumulative row lengths (what TEI
  uses for Qwen3), when the flash_attn package is installed; CUDA and fp16/bf16 only.

SDPA over nested jagged tensors was tried and is not offered: torch refuses `is_causal=True`
with nested queries/keys ("No viable backend", torch 2.13 on CPU).

The model's own modules and weights do the work (embedding, RMSNorms, rotary cos/sin, the MLP's
activation, the final norm); a few element-wise steps are done once for queries and keys
together, with the same arithmetic as transformers (Qwen3's q/k RMSNorm, the rotary rotation,
written back into the projection's output), and residual adds are folded into the output
matrix products (addmm): fewer passes over memory and fewer kernel launches. Query/key/value and
gate/up are fused into one matrix each whose slices become the original parameters, so no
weight is stored twice and the model's padded forward still runs (the fallback, and the tests'
reference). Outputs equal the padded forward to rounding (tests/unit/test_packed_decoder.py).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

from worker.invariant.products import MIN_ROWS
from worker.packed.fused_linears import fuse_linears
from worker.packed.rows import GROUP_RATIO, PackedRows, RowGroups

log = logging.getLogger(__name__)

DECODER_TYPES = ("qwen3", "qwen2", "llama")
KERNELS = ("sdpa_groups", "flex", "flash_varlen")
# Whether EMBED_PACKED=auto packs decoders on CUDA. Off until measured: the issue asks `auto` to turn
# on what measured faster on the device class, and no GPU was at hand when this was written. The
# packed forward computes no more than the padded one in any layer, but its gather/scatter per length
# group per layer has not been timed against padded SDPA on a GPU. `EMBED_PACKED=on` runs it there;
# scripts/gpu_check.py + scripts/bench_gpu.py measure it, and their figures should decide this flag.
AUTO_PACKS_DECODERS_ON_CUDA = False


def decoder_unsupported_reason(model) -> str | None:
    """Why `model` cannot run the packed decoder forward (None when it can)."""
    config = model.config
    if config.model_type not in DECODER_TYPES:
        return f"model type {config.model_type!r} is not a Qwen3-family decoder ({', '.join(DECODER_TYPES)})"
    if not all(hasattr(model, name) for name in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return "no embed_tokens/layers/norm/rotary_emb modules (not a bare decoder model)"
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"} or getattr(config, "use_sliding_window", False):
        return f"sliding-window attention layers ({sorted(layer_types)})"
    for layer in model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        if not all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj", "scaling")) or \
                not all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            return "a layer without the q/k/v/o projections or the gated MLP"
        for parts in ((attn.q_proj, attn.k_proj, attn.v_proj), (mlp.gate_proj, mlp.up_proj)):
            if len({p.bias is None for p in parts}) != 1:
                return "projections with and without bias in one layer"
    return None


def flash_attn_available() -> bool:
    try:
        importlib.import_module("flash_attn")
    except ImportError:
        return False
    return True


def _has_flex() -> bool:
    try:
        importlib.import_module("torch.nn.attention.flex_attention")
    except ImportError:
        return False
    return True


# SDPA's enable_gqa (grouped key/value heads without copying them) came in torch 2.5; the floor is 2.4.
_SDPA_GQA = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 5)


def resolve_kernel(setting: str, device: torch.device, dtype: torch.dtype) -> str:
    """The attention kernel for EMBED_ATTENTION=`setting` on this device; ValueError when it cannot run.

    `auto`: flash-attn's varlen kernel on CUDA when installed (fp16/bf16), else `sdpa_groups`.
    """
    if setting == "auto":
        if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16) and flash_attn_available():
            return "flash_varlen"
        return "sdpa_groups"
    if setting not in KERNELS:
        raise ValueError(f"unknown attention kernel {setting!r}; expected auto or one of {', '.join(KERNELS)}")
    if setting == "flex" and not _has_flex():
        raise ValueError(f"EMBED_ATTENTION=flex needs torch >= 2.5 (FlexAttention); this is torch {torch.__version__}")
    if setting == "flash_varlen":
        if device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16):
            raise ValueError("EMBED_ATTENTION=flash_varlen needs CUDA and EMBED_DTYPE bfloat16 or float16")
        if not flash_attn_available():
            raise ValueError("EMBED_ATTENTION=flash_varlen needs the flash_attn package, which is not installed")
    return setting


class PackedDecoder:
    """Runs a loaded Qwen3-family decoder (its bare model: embed_tokens, layers, norm) on packed rows."""

    def __init__(self, model, kernel: str = "sdpa_groups", exact_groups: bool = False):
        """`exact_groups`: `sdpa_groups` per group of one exact length (no padding), for the batch-invariant forward."""
        reason = decoder_unsupported_reason(model)
        if reason:
            raise ValueError(f"cannot pack this model: {reason}")
        if kernel not in KERNELS:
            raise ValueError(f"unknown attention kernel {kernel!r}")
        self.model = model
        self.kernel = kernel
        self.group_ratio = 1.0 if exact_groups else GROUP_RATIO
        config = model.config
        first = model.layers[0].self_attn
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = first.head_dim
        self.scale = float(first.scaling)
        self._qkv = [fuse_linears(layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj)
                     for layer in model.layers]
        self._gate_up = [fuse_linears(layer.mlp.gate_proj, layer.mlp.up_proj) for layer in model.layers]
        self._qk_norm = [_QKNorm.of(layer.self_attn, self.heads, self.kv_heads) for layer in model.layers]
        self.mlp_block = MLP_BLOCK if model.embed_tokens.weight.device.type == "cpu" else None
        self._attention = {"sdpa_groups": _GroupAttention, "flex": _FlexAttention,
                           "flash_varlen": _FlashVarlenAttention}[kernel]

    def forward(self, packed: PackedRows, pause: Callable[[], None] | None = None) -> torch.Tensor:
        """Final hidden state (after the model's last norm) of every real token: (tokens x hidden)."""
        model = self.model
        hidden = model.embed_tokens(packed.ids)
        # cos/sin for each token's position in its own row: (tokens, 1, head_dim), in the model's dtype.
        cos, sin = (t[0, :, None] for t in model.rotary_emb(hidden[None], packed.positions[None]))
        attention = self._attention(packed, self)
        qk_heads = self.heads + self.kv_heads
        for layer, (qkv_w, qkv_b), (gu_w, gu_b), qk_norm in zip(model.layers, self._qkv, self._gate_up, self._qk_norm):
            qkv = F.linear(layer.input_layernorm(hidden), qkv_w, qkv_b).view(-1, qk_heads + self.kv_heads, self.head_dim)
            qk = qkv[:, :qk_heads]  # queries and keys: normed (Qwen3) and rotated together, written back in place
            _rotate(qk_norm(qk) if qk_norm is not None else qk, cos, sin, out=qk)
            context = attention.attend(qkv)
            hidden = _add_linear(hidden, context, layer.self_attn.o_proj)
            hidden = self._mlp(layer, hidden, gu_w, gu_b)
            if pause is not None:
                pause()
        return model.norm(hidden)

    def _mlp(self, layer, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """hidden + MLP(norm(hidden)), over blocks of MLP_BLOCK tokens on a CPU (see MLP_BLOCK)."""
        parts = []
        for start, end in mlp_blocks(hidden.shape[0], self.mlp_block):
            part = hidden[start:end]
            gate, up = F.linear(layer.post_attention_layernorm(part), weight, bias).chunk(2, dim=-1)
            parts.append(_add_linear(part, layer.mlp.act_fn(gate) * up, layer.mlp.down_proj))
        return parts[0] if len(parts) == 1 else torch.cat(parts)


# On a CPU the MLP runs over blocks of this many tokens: its (tokens x 2 intermediate) activations
# then stay in cache between the matrix product and the element-wise steps around it.
MLP_BLOCK = 512


def mlp_blocks(tokens: int, block: int | None) -> list[tuple[int, int]]:
    """(start, end) of each MLP block over `tokens` tokens: `block` tokens each (all at once when None).

    A tail shorter than MIN_ROWS joins the block before it: a product over so few rows takes other
    kernels, which round its rows otherwise, and the batch-invariant forward's promise (a text's bits
    do not depend on its pass) would break for the shortest rows of a pass just over a block.
    """
    if not block or tokens <= block:
        return [(0, tokens)]
    bounds = list(range(0, tokens, block)) + [tokens]
    if bounds[-1] - bounds[-2] < MIN_ROWS:
        del bounds[-2]
    return list(zip(bounds, bounds[1:]))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as transformers' apply_rotary_pos_emb computes it (x*cos + rotate_half(x)*sin), into `out`."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return torch.addcmul(x * cos, rotated, sin, out=out)


def _add_linear(residual: torch.Tensor, x: torch.Tensor, linear) -> torch.Tensor:
    """residual + linear(x), the add folded into the matrix product where the layer has no bias."""
    if linear.bias is not None:
        return residual + linear(x)
    return torch.addmm(residual, x, linear.weight.t())


class _QKNorm:
    """Qwen3's q_norm and k_norm (RMSNorm over each head's features) on queries and keys at once.

    The same arithmetic as the model's RMSNorm modules (float32 statistics, the weight applied in
    the input's dtype), with the two weights laid out per head: one pass instead of two.
    """

    def __init__(self, attn, heads: int, kv_heads: int):
        self.eps = float(attn.q_norm.variance_epsilon)
        q, k = attn.q_norm.weight.detach(), attn.k_norm.weight.detach()
        self.weight = torch.cat([q.expand(heads, -1), k.expand(kv_heads, -1)])  # (heads + kv_heads, head_dim)

    @classmethod
    def of(cls, attn, heads: int, kv_heads: int) -> _QKNorm | None:
        norms = [getattr(attn, name, None) for name in ("q_norm", "k_norm")]
        if any(n is None for n in norms):
            return None  # Qwen2, Llama: no per-head norms
        if not all(hasattr(n, "variance_epsilon") and hasattr(n, "weight") for n in norms) or \
                norms[0].variance_epsilon != norms[1].variance_epsilon:
            raise ValueError("q_norm/k_norm are not plain RMSNorms with one epsilon")
        return cls(attn, heads, kv_heads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


class _GroupAttention:
    """`sdpa_groups`: causal SDPA per group of similar-length rows, each a right-padded grid."""

    def __init__(self, packed: PackedRows, decoder: PackedDecoder):
        self.layout = RowGroups(packed, decoder.group_ratio)
        self.heads, self.kv_heads, self.scale = decoder.heads, decoder.kv_heads, decoder.scale

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """(tokens, heads + 2 kv_heads, head_dim), rotated -> (tokens, heads x head_dim)."""
        layout, h, kv = self.layout, self.heads, self.kv_heads
        grids = layout.scatter(qkv)  # one copy for all groups (none without padding)
        outs = []
        for grid in layout.views(grids):  # (rows, longest, heads + 2 kv_heads, head_dim)
            x = grid.transpose(1, 2)
            q, k, v = x[:, :h], x[:, h:h + kv], x[:, h + kv:]
            if kv == h:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
            elif _SDPA_GQA:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale, enable_gqa=True)
            else:  # torch 2.4: each key/value head repeated for its group of query heads
                k, v = (t.repeat_interleave(h // kv, dim=1) for t in (k, v))
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
            outs.append(out.transpose(1, 2).reshape(-1, h * qkv.shape[-1]))  # (rows x longest, hidden)
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return layout.gather(out)


# FlexAttention's block size; packed tokens are padded to a bucket of whole blocks.
FLEX_BLOCK = 128
_compiled_flex = None


def _flex_function(device: torch.device):
    """flex_attention, compiled once per process on CUDA (lazily: the first packed pass pays for it)."""
    global _compiled_flex
    from torch.nn.attention.flex_attention import flex_attention

    if device.type != "cuda":
        return flex_attention  # unfused reference implementation: correct, tokens^2 memory (tests only)
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


def flex_bucket(tokens: int) -> int:
    """Packed length FlexAttention sees: the next power of two of at least one block (few compiled shapes)."""
    return max(FLEX_BLOCK, 1 << (max(tokens, 1) - 1).bit_length())


class _FlexAttention:
    """`flex`: one FlexAttention call over all packed tokens with a causal same-row BlockMask."""

    def __init__(self, packed: PackedRows, decoder: PackedDecoder):
        from torch.nn.attention.flex_attention import create_block_mask

        self.tokens = int(packed.ids.shape[0])
        device = packed.ids.device
        self.length = flex_bucket(self.tokens)
        doc = torch.full((self.length,), -1, dtype=torch.int64, device=device)  # padding: its own "row"
        doc[:self.tokens] = packed.row_of

        def same_row_causal(b, h, q_idx, kv_idx):
            return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)

        self.mask = create_block_mask(same_row_causal, None, None, self.length, self.length, device=device,
                                      _compile=device.type == "cuda")
        self.function = _flex_function(device)
        self.heads, self.kv_heads, self.scale = decoder.heads, decoder.kv_heads, decoder.scale

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        h, kv = self.heads, self.kv_heads
        x = F.pad(qkv, (0, 0, 0, 0, 0, self.length - self.tokens)).transpose(0, 1)[None]  # (1, heads, length, dim)
        out = self.function(x[:, :h], x[:, h:h + kv], x[:, h + kv:], block_mask=self.mask, scale=self.scale,
                            enable_gqa=kv != h)
        return out[0, :, :self.tokens].transpose(0, 1).reshape(self.tokens, -1)


class _FlashVarlenAttention:
    """`flash_varlen`: flash-attn's variable-length causal kernel over cumulative row lengths."""

    def __init__(self, packed: PackedRows, decoder: PackedDecoder):
        from flash_attn import flash_attn_varlen_func

        self.function = flash_attn_varlen_func
        self.cu_seqlens = F.pad(torch.cumsum(packed.lengths, 0), (1, 0)).to(torch.int32)
        self.longest = max(packed.host_lengths) if packed.host_lengths else int(packed.lengths.max())
        self.scale, self.heads, self.kv_heads = decoder.scale, decoder.heads, decoder.kv_heads

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        h, kv = self.heads, self.kv_heads
        q, k, v = (t.contiguous() for t in (qkv[:, :h], qkv[:, h:h + kv], qkv[:, h + kv:]))
        out = self.function(q, k, v, self.cu_seqlens, self.cu_seqlens, self.longest, self.longest,
                            softmax_scale=self.scale, causal=True)
        return out.reshape(out.shape[0], -1)

