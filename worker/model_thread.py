"""The one thread that runs the model: its load, its warm-up and then every forward pass (the batcher's loop).

Why one thread: torch's CPU operators run on OpenMP (libgomp), which keeps a pool of worker threads for
each thread that opens a parallel region. A model loaded and warmed up on the main thread and run on the
batcher's thread makes two pools, so more OpenMP threads than cores, and libgomp then throttles how long
its idle workers spin before they sleep (GOMP_SPINCOUNT's "more threads than CPUs" rule): each of the
hundreds of small operators in a forward then waits for a worker's futex wake-up. Measured (2026-12-07, this
2-core box, tiny Qwen3, 256-text passes): 7,100-8,500 texts/s on the thread that loaded the model, 5,400-5,700
on another thread (1.4 cores used instead of 2); loaded and run on one other thread: 7,300.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class ModelThread:
    """A daemon thread that runs what it is given, one call at a time, in order."""

    def __init__(self, name: str = "forward"):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._start_lock = threading.Lock()

    def submit(self, fn: Callable[[], T]) -> Future:
        """Queue `fn` for the thread (started by the first call); its result or exception comes in the future."""
        with self._start_lock:
            if not self._thread.is_alive():
                self._thread.start()
        future: Future = Future()
        self._calls.put((fn, future))
        return future

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run `fn(*args, **kwargs)` on the thread and wait for it."""
        return self.submit(lambda: fn(*args, **kwargs)).result()

    def _serve(self) -> None:
        while True:
            fn, future = self._calls.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - the caller waiting on the future gets it
                future.set_exception(exc)
            else:
                future.set_result(result)
