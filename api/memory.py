"""Keep an API process from staying as big as the results it served (the goal: an idle RSS of at most 150 MiB each).

The RSS of a gunicorn worker after streaming a 200,000 x 64 result in every format twice (2026-12-07,
scripts/bench_results.py's job, the API restarted per setting, same stack): 265 MiB as it was; 143-146
MiB with the first two of these, 131-133 MiB with all three, at the same download rates:

- `release` after each result: the C heap keeps what a stream freed resident (glibc keeps freed
  blocks for reuse; its mmap threshold grows to the largest block freed, up to 32 MiB, so a result's
  pieces come from the heap), and so does pyarrow's pool. Without it: 256-290 MiB.
- numpy marked absent. pyarrow imports it when it is installed (a development venv with the worker's
  extra; the API image has none): ~16 MiB of libraries and heap. The API never uses numpy
  (tests/unit/test_boundaries.py); without it pyarrow takes the path it takes in the API image.
- At most 2 malloc arenas (glibc's M_ARENA_MAX; MALLOC_ARENA_MAX in the environment wins): each of
  gunicorn's request threads would otherwise get an arena of its own (up to 8 per core), each keeping
  its own free memory and fragments.

Pinning glibc's mmap threshold (M_MMAP_THRESHOLD 128 KiB) gave 132 MiB without the arena limit but
cost 25-35 % of the msgpack rates (every large buffer a fresh mapping); pyarrow's system pool, 128 MiB
and half the msgpack rate. Neither is done. embedserve/jobs/results.py reads row groups on the calling
thread, so pyarrow's allocations are in the heap that `release` collects.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENA_MAX = 2


def _glibc(name: str):
    """A function of glibc's malloc, or None where the C library has none of that name (musl, macOS)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), name, None)
    except OSError:
        return None


_MALLOPT, _MALLOC_TRIM = _glibc("mallopt"), _glibc("malloc_trim")


def prepare() -> None:
    """At a server process's start, before its request threads and before anything imports pyarrow."""
    if "numpy" not in sys.modules:
        sys.modules["numpy"] = None  # `import numpy` raises ImportError: pyarrow goes without it
    if _MALLOPT is not None and "MALLOC_ARENA_MAX" not in os.environ:
        _MALLOPT(M_ARENA_MAX, ARENA_MAX)


def release() -> None:
    """Give the heap's free memory back to the system (after a result was streamed; a few ms)."""
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()  # this thread's pages of pyarrow's pool (mimalloc)
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
