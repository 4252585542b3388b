"""The batcher's scheduling, driven with a deterministic forward function (no model needed)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from embedserve.errors import Timeout
from worker.batcher import Batcher


class RecordingForward:
    """Returns each row's length and first id as its 'vector', and records every batch."""

    def __init__(self, gate: threading.Event | None = None):
        self.batches: list[list[list[int]]] = []
        self.gate = gate

    def __call__(self, rows):
        if self.gate:
            self.gate.wait(5)
        self.batches.append(rows)
        return np.array([[len(r), r[0]] for r in rows], dtype=np.float32)


def test_results_come_back_in_submission_order():
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch_tokens=64, wait_s=0)
    batcher.start()
    try:
        rows = [[i] * (1 + (i * 7) % 13) for i in range(40)]
        out = batcher.submit(rows, priority=0, deadline=time.time() + 10).future.result(5)
        assert out[:, 1].tolist() == [float(i) for i in range(40)]
        assert all(len(b) * max(map(len, b)) <= 64 or len(b) == 1 for b in forward.batches)
    finally:
        batcher.stop()


def test_interactive_rows_go_before_bulk_rows():
    gate = threading.Event()
    forward = RecordingForward(gate)
    batcher = Batcher(forward, max_batch_tokens=4, wait_s=0)
    batcher.start()
    try:
        first = batcher.submit([[9, 9, 9, 9]], priority=0, deadline=time.time() + 10)  # occupies the thread
        time.sleep(0.05)
        bulk = batcher.submit([[1, 1, 1, 1]] * 3, priority=1, deadline=time.time() + 10)
        urgent = batcher.submit([[2, 2, 2, 2]], priority=0, deadline=time.time() + 10)
        gate.set()
        for sub in (first, bulk, urgent):
            sub.future.result(5)
        order = [batch[0][0] for batch in forward.batches]
        assert order.index(2) < order.index(1)
    finally:
        batcher.stop()


def test_expired_rows_cost_no_forward_pass():
    gate = threading.Event()
    forward = RecordingForward(gate)
    batcher = Batcher(forward, max_batch_tokens=4, wait_s=0)
    batcher.start()
    try:
        blocker = batcher.submit([[5, 5, 5, 5]], priority=0, deadline=time.time() + 10)
        time.sleep(0.05)
        gone = batcher.submit([[7, 7]], priority=0, deadline=time.time() - 1)
        gate.set()
        blocker.future.result(5)
        with pytest.raises(Timeout):
            gone.future.result(5)
        assert all(batch[0][0] != 7 for batch in forward.batches)
    finally:
        batcher.stop()


def test_out_of_memory_splits_the_batch():
    class OOM(Exception):
        pass

    calls = []

    def forward(rows):
        calls.append(len(rows))
        if len(rows) > 2:
            raise OOM()
        return np.ones((len(rows), 2), dtype=np.float32)

    batcher = Batcher(forward, max_batch_tokens=1000, wait_s=0, is_oom=lambda exc: isinstance(exc, OOM))
    batcher.start()
    try:
        out = batcher.submit([[1]] * 8, priority=0, deadline=time.time() + 10).future.result(5)
        assert out.shape == (8, 2)
        assert calls[0] == 8 and max(calls[1:]) <= 4 and sum(c for c in calls if c <= 2) == 8
    finally:
        batcher.stop()


def test_interactive_rows_never_share_a_pass_with_bulk_rows():
    gate = threading.Event()
    forward = RecordingForward(gate)
    batcher = Batcher(forward, max_batch_tokens=1000, wait_s=0)
    batcher.start()
    try:
        first = batcher.submit([[9, 9]], priority=1, deadline=time.time() + 10)  # occupies the thread
        time.sleep(0.05)
        bulk = batcher.submit([[1, 1]] * 5, priority=1, deadline=time.time() + 10)
        urgent = batcher.submit([[2, 2]] * 2, priority=0, deadline=time.time() + 10)
        gate.set()
        for sub in (first, bulk, urgent):
            sub.future.result(5)
        mixed = [b for b in forward.batches if {r[0] for r in b} >= {1, 2}]
        assert mixed == []
        assert [r[0] for r in forward.batches[1]] == [2, 2]  # the urgent rows ran right after the blocker
    finally:
        batcher.stop()


def test_bulk_only_passes_keep_to_the_bulk_budget():
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch_tokens=100, bulk_batch_tokens=8, wait_s=0)
    batcher.start()
    try:
        batcher.submit([[1, 1]] * 12, priority=1, deadline=time.time() + 10).future.result(5)
        assert forward.batches and all(len(b) * 2 <= 8 for b in forward.batches)
        forward.batches.clear()
        batcher.submit([[3, 3]] * 12, priority=0, deadline=time.time() + 10).future.result(5)
        assert max(len(b) for b in forward.batches) > 4  # interactive passes use the full budget
    finally:
        batcher.stop()
