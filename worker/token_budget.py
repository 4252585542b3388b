"""Tokens per forward pass on a GPU, sized from the memory free once the model is loaded.

Used only when EMBED_MAX_BATCH_TOKENS is unset: a set value always wins (several workers may
share one GPU, and each then needs its share). The estimate is deliberately coarse and on the
safe side; the batcher still splits a pass that runs out of memory (worker/batcher.py).

Inference keeps no activations between layers, so a pass's peak is one layer's working set per
token: the residual stream and its normed copy, the fused query/key/value projection and the
copies attention makes of it (norms, rotary, the per-group grid), and the MLP's gate/up
projection with its activation and product, which is the largest part. Per token, in elements:

    per_token = HIDDEN_COPIES x hidden + MLP_COPIES x intermediate + QKV_COPIES x (heads + 2 x kv_heads) x head_dim

times the dtype's bytes, plus, for a padded batch, the attention mask transformers builds
(rows x longest x longest booleans: longest bytes per padded token). Packed, in bf16: Qwen3-0.6B
64 KiB per token (an H200 with ~130 GiB free: capped at MAX_TOKENS), Qwen3-8B 196 KiB (a 24 GB
card with ~6.5 GiB free after its 16 GB of weights: 24,320 tokens; 20,736 padded with 32k rows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

HIDDEN_COPIES = 8
MLP_COPIES = 4
QKV_COPIES = 3
# Share of the free memory a worker plans to use: the rest is for the allocator's fragmentation,
# cuBLAS/attention workspaces, and pinned copies in flight.
USABLE_SHARE = 0.7
# Bounds: at least a pass that holds a long row; at most what keeps one pass short for sync rows
# waiting behind it (a 0.6B model at ~200k tokens/s runs 65,536 tokens in about a third of a second).
MIN_TOKENS = 2048
MAX_TOKENS = 65536
ROUND_TO = 256


@dataclass(frozen=True)
class ModelShape:
    """What the per-token estimate needs from a transformer config."""

    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    max_length: int = 0

    @classmethod
    def of(cls, config, max_length: int = 0) -> ModelShape:
        heads = int(config.num_attention_heads)
        hidden = int(config.hidden_size)
        return cls(hidden=hidden, intermediate=int(getattr(config, "intermediate_size", 0) or 4 * hidden),
                   heads=heads, kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
                   head_dim=int(getattr(config, "head_dim", None) or hidden // heads), max_length=max_length)


def bytes_per_token(shape: ModelShape, dtype_bytes: int, padded: bool) -> int:
    """Peak activation bytes one token of a forward pass holds (see the module's docstring)."""
    qkv = (shape.heads + 2 * shape.kv_heads) * shape.head_dim
    elements = HIDDEN_COPIES * shape.hidden + MLP_COPIES * shape.intermediate + QKV_COPIES * qkv
    mask = shape.max_length if padded else 0  # one boolean per key of the longest row
    return elements * dtype_bytes + mask


def token_budget(free_bytes: int, shape: ModelShape, dtype_bytes: int, padded: bool) -> int:
    """Tokens per pass that fit USABLE_SHARE of `free_bytes`, rounded down, within [MIN_TOKENS, MAX_TOKENS]."""
    fits = int(free_bytes * USABLE_SHARE) // bytes_per_token(shape, dtype_bytes, padded)
    return max(MIN_TOKENS, min(MAX_TOKENS, fits // ROUND_TO * ROUND_TO))


def gpu_token_budget(model) -> int | None:
    """The budget for a loaded engine or reranker on CUDA (None elsewhere): from the memory free now."""
    import torch

    device = getattr(model, "device", None)
    if device is None or device.type != "cuda":
        return None
    network = getattr(model, "decoder", None) or getattr(model, "model", None)
    if network is None:
        return None
    torch.cuda.empty_cache()  # memory this process cached (the warm-up's) counts as free for its own passes
    free, _total = torch.cuda.mem_get_info(device)
    dtype_bytes = next(network.parameters()).element_size()
    shape = ModelShape.of(network.config, int(getattr(model, "max_length", 0) or 0))
    padded = getattr(model, "pads_batches", True)
    budget = token_budget(free, shape, dtype_bytes, padded=padded)
    log.info("GPU token budget per pass: %d tokens (%.1f GiB free, ~%d KiB per %s token; EMBED_MAX_BATCH_TOKENS "
             "overrides it)", budget, free / 2**30, bytes_per_token(shape, dtype_bytes, padded) // 1024,
             "padded" if padded else "packed")
    return budget
