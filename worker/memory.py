"""Keep the worker's resident memory near what it uses: fewer malloc arenas, freed pages returned.

glibc gives each thread that allocates concurrently an arena of its own (up to 8 per core)
and keeps freed memory in them for reuse; a worker with dozens of task threads and
multi-megabyte activations per forward pass grows by a few hundred MiB that it no longer
uses. Two arenas (MALLOC_ARENA_MAX=2, set with mallopt before the threads start) and a
malloc_trim(0) once the forward thread has been idle give most of it back; trimming only when
idle keeps its cost (it walks the heap) off the hot path. Large allocations are not forced to
mmap instead (MALLOC_MMAP_THRESHOLD_): that returned the most memory but the page faults on
every pass cost a quarter of the throughput on the 2-core box (docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h
ARENAS = 2

_libc = None
try:
    _name = ctypes.util.find_library("c")
    _libc = ctypes.CDLL(_name) if _name else None
    if _libc is not None and not (hasattr(_libc, "mallopt") and hasattr(_libc, "malloc_trim")):
        _libc = None  # not glibc (musl, macOS): nothing to tune
except OSError:
    _libc = None


def limit_arenas() -> None:
    """Cap malloc arenas; call before the task threads start."""
    if _libc is not None and not _libc.mallopt(_M_ARENA_MAX, ARENAS):
        log.debug("mallopt(M_ARENA_MAX) refused")


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim)."""
    if _libc is not None:
        _libc.malloc_trim(0)
