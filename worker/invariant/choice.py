"""Whether this worker runs the batch-invariant forward, from EMBED_DETERMINISTIC and the device.

- `auto` (the default): on where it was measured cheap, i.e. on the CPU (docs/benchmarks.md has
  its cost); off on CUDA until a GPU measurement says what it costs there.
- `on`: everywhere. On CUDA the same exact-length attention groups and padded small products are
  used, but cuBLAS picks its kernels (split-K among them) by row count at any size, so rows are not
  expected to keep their bits there: that needs batch-invariant CUDA kernels (fixed split sizes),
  not built yet, and no GPU was at hand to measure either.
- `off`: the fastest forward for the device; a text's last bits may then depend on its batch.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from worker.invariant.products import RowInvariantProducts

VALUES = ("auto", "on", "off")


def wants_invariance(setting: str, device: torch.device) -> bool:
    """True when EMBED_DETERMINISTIC=`setting` asks for the batch-invariant forward on `device`."""
    if setting == "auto":
        return device.type == "cpu"
    return setting == "on"


def invariance(on: bool) -> AbstractContextManager:
    """What a forward runs under: row-invariant matrix products when `on`, else nothing."""
    return RowInvariantProducts() if on else nullcontext()
