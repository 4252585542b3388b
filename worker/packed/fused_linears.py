"""Several linear layers over the same input as one matrix product, for the packed forwards.

Query/key/value (and a decoder's gate/up) become one matrix whose row slices are the original
parameters, so the padded forward, which calls the original layers, still works and no weight
is stored twice.
"""

from __future__ import annotations

import torch


def fuse_linears(*linears) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias, when the layers have one) for `linears`; the originals become views of it."""
    weight = torch.cat([p.weight.detach() for p in linears])
    has_bias = linears[0].bias is not None
    bias = torch.cat([p.bias.detach() for p in linears]) if has_bias else None
    row = 0
    for part in linears:
        size = part.weight.shape[0]
        part.weight.data = weight[row:row + size]
        if has_bias:
            part.bias.data = bias[row:row + size]
        row += size
    return weight, bias
