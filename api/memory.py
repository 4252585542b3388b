"""Keep an API process from staying as big as the results it served (issue 21: idle RSS <= 150 MiB each).

Streaming a 200,000-row result in every format left a gunicorn worker at 272 MiB (scripts/bench_results.py;
docs/benchmarks.md, "Result downloads"). Each of these kept tens of MiB, measured one at a time:

- numpy. pyarrow imports it when it is installed (a development venv with the worker's extra; the API
  image has none): ~16 MiB of libraries, and more of heap once pyarrow converts through it. The API
  never uses numpy (tests/unit/test_boundaries.py), so `prepare` marks it absent and pyarrow takes the
  path it takes in the API image.
- pyarrow's default pool (mimalloc) keeps the pages it freed: the system allocator is used instead.
- glibc raises its mmap threshold to the largest block freed (up to 32 MiB); after that a result's
  pieces come from the heap instead of their own mappings. The threshold is pinned at its default, 128 KiB.
- What a result's stream freed on the heap stays resident until trimmed: `release` after each result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 128 * 1024  # glibc's default; setting it turns off its growth


def _libc():
    """glibc's mallopt and malloc_trim, or None for either where the C library lacks it (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return None, None
    return getattr(libc, "mallopt", None), getattr(libc, "malloc_trim", None)


_MALLOPT, _MALLOC_TRIM = _libc()


def prepare() -> None:
    """At a server process's start, before anything imports pyarrow."""
    if "numpy" not in sys.modules:
        sys.modules["numpy"] = None  # `import numpy` raises ImportError: pyarrow goes without it
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # read when pyarrow makes its pool
    if _MALLOPT is not None:
        _MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release() -> None:
    """Give the C heap's free memory back to the system (after a result was streamed; a few ms)."""
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
