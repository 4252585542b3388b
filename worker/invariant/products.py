"""Matrix products whose every row comes out the same whatever the number of rows beside it.

A BLAS picks its kernel, blocking and threading from the product's shape. On this project's CPU
(torch 2.13, oneDNN, 2 threads) a linear layer over 1-11 rows takes other kernels than over more,
and those reduce each row in another order: a one-text request of 9 tokens then differs in the
last bits from the same text inside a 2,000-token pass. From 12 rows on, every row count tried
(12 to 6,000, tests/unit/test_batch_invariance.py) gave each row the same bits.

Under `RowInvariantProducts`, every 2-D product of a linear layer (F.linear, addmm, mm, a 2-D `@`)
with fewer than MIN_ROWS rows gets zero rows added below (and dropped after), so every product
runs in the regime where rows are independent. Larger products are left as they are: no padding,
no cost. Products of three or more dimensions (attention's scores, the rotary embedding's outer
product) pass through; attention is made invariant by its exact-length groups instead.

The idea is Thinking Machines' batch-invariant kernels ("Defeating Nondeterminism in LLM
Inference", 2025). Fixed row tiles (every product cut into tiles of 16 rows, run as one batched
product) were tried first: also invariant here, but 30 % slower on the linear layers of a bulk
pass, where the BLAS's own blocking beats 16-row tiles. On CUDA, cuBLAS picks split-K kernels by
row count at any size; there this padding does not make rows invariant (see worker/invariant/choice.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# Products of fewer rows than this get zero rows added; 16 is the next multiple of 8 above the 11
# rows where this machine's kernels change.
MIN_ROWS = 16


def _pad_rows(x: torch.Tensor) -> torch.Tensor:
    """A 2-D `x` with zero rows added up to MIN_ROWS."""
    return torch.cat([x, x.new_zeros(MIN_ROWS - x.shape[0], *x.shape[1:])])


class RowInvariantProducts(TorchFunctionMode):
    """Within this mode, 2-D matrix products never run on fewer than MIN_ROWS rows (see the module's docstring).

    The padded product is the same call as the original (a linear layer's bias stays fused into the
    product, which rounds differently from adding it after), on more rows, cut back to the rows asked for.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and len(args) >= 2 and not kwargs:
            x = args[0]
            rows = x.numel() // x.shape[-1] if x.dim() >= 2 and x.shape[-1] else 0
            if 0 < rows < MIN_ROWS:
                flat = _pad_rows(x.reshape(rows, x.shape[-1]))
                return func(flat, *args[1:])[:rows].reshape(*x.shape[:-1], -1)
        elif func in (torch.addmm, torch.Tensor.addmm) and len(args) == 3 and not kwargs.get("out"):
            bias, x, weight_t = args
            if x.dim() == 2 and 0 < x.shape[0] < MIN_ROWS:
                rows = x.shape[0]
                if bias.dim() == 2 and bias.shape[0] == rows:  # a residual: one row per row of x
                    bias = _pad_rows(bias)
                return func(bias, _pad_rows(x), weight_t, **kwargs)[:rows]
        elif func in (torch.mm, torch.matmul, torch.Tensor.mm, torch.Tensor.matmul, torch.Tensor.__matmul__) \
                and len(args) == 2 and not kwargs:
            x, other = args
            if isinstance(x, torch.Tensor) and isinstance(other, torch.Tensor) and x.dim() == 2 \
                    and other.dim() == 2 and 0 < x.shape[0] < MIN_ROWS:
                return func(_pad_rows(x), other)[:x.shape[0]]
        return func(*args, **kwargs)
