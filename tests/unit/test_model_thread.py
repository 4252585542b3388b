"""The model's one thread: calls run on it in order, and the batcher's forwards run on it too.

Why it matters is in worker/model_thread.py (torch's OpenMP pools: one per thread that runs the model);
what it is worth is a benchmark's figure (docs/benchmarks.md), not asserted here.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from worker.batcher import Batcher
from worker.model_thread import ModelThread


def test_calls_run_on_one_thread_that_is_not_the_callers():
    thread = ModelThread()
    idents = [thread.call(threading.get_ident) for _ in range(3)]
    assert len(set(idents)) == 1
    assert idents[0] != threading.get_ident()
    assert thread.call(lambda a, b=0: a + b, 2, b=3) == 5


def test_a_failing_call_raises_in_the_caller_and_the_thread_goes_on():
    thread = ModelThread()

    def fail():
        raise ValueError("no such model")

    with pytest.raises(ValueError, match="no such model"):
        thread.call(fail)
    assert thread.call(lambda: "still here") == "still here"


def test_calls_run_in_the_order_given():
    thread = ModelThread()
    seen: list[int] = []
    futures = [thread.submit(lambda i=i: seen.append(i)) for i in range(50)]
    for future in futures:
        future.result(5)
    assert seen == list(range(50))


def test_the_batcher_runs_its_forwards_on_the_thread_that_loaded_the_model():
    thread = ModelThread()
    loaded_on = thread.call(threading.get_ident)  # what worker/main.py's load() does with the model
    forwarded_on: list[int] = []

    def forward(rows):
        forwarded_on.append(threading.get_ident())
        return np.zeros((len(rows), 2), dtype=np.float32)

    batcher = Batcher(forward, max_batch_tokens=8, wait_s=0, model_thread=thread)
    batcher.start()
    try:
        for _ in range(3):
            batcher.submit([[1, 2, 3], [4, 5]], priority=0, deadline=time.time() + 10).future.result(5)
    finally:
        batcher.stop()
    assert forwarded_on and set(forwarded_on) == {loaded_on}
    # Stopped: the loop gave the thread back, which runs calls again.
    assert thread.call(threading.get_ident) == loaded_on
