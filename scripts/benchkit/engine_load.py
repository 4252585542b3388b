"""Rows through the worker's own Batcher and engine, as a worker's job or its sync clients would send them."""

from __future__ import annotations

import threading
import time

import torch

from embedserve import defaults
from worker.batcher import Batcher
from worker.model_thread import ModelThread


def through_batcher(engine, rows: list[list[int]], workload: str, max_batch_tokens: int,
                    bulk_batch_tokens: int, model_thread: ModelThread | None = None) -> float:
    """Seconds for `rows` through a Batcher set up as worker/main.py sets it up, budgets given.

    `model_thread`: the thread that loaded `engine` (worker/model_thread.py), where the worker runs its
    forwards; without one the batcher runs them on a thread of its own (on a CPU, a second OpenMP pool).

    `job`: chunks of JOB_CHUNK_INPUTS rows at bulk priority, BULK_SLOTS of them in flight at once, as
    the worker's bulk slots do. `clients`: 32 clients sending one text per request, at interactive
    priority, so a pass holds the (at most 32) rows that arrived together, whatever their lengths.
    """
    padded = engine.pads_batches
    batcher = Batcher(engine.embed_batch, max_batch_tokens=max_batch_tokens, bulk_batch_tokens=bulk_batch_tokens,
                      padded=padded, preemptible=not padded,
                      is_oom=lambda exc: isinstance(exc, torch.cuda.OutOfMemoryError), model_thread=model_thread)
    size, priority, senders = (defaults.JOB_CHUNK_INPUTS, 1, defaults.BULK_SLOTS) if workload == "job" else (1, 0, 32)
    chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
    chunks.reverse()  # popped from the end: in order
    lock = threading.Lock()

    def slot() -> None:
        while True:
            with lock:
                if not chunks:
                    return
                chunk = chunks.pop()
            batcher.submit(chunk, priority=priority, deadline=time.time() + 3600).future.result(3600)

    batcher.start()
    try:
        started = time.perf_counter()
        threads = [threading.Thread(target=slot) for _ in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        return elapsed
    finally:
        batcher.stop()
