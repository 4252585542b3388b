"""The batcher's scheduling, driven with a deterministic forward function (no model needed)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from embedserve.errors import Timeout
from worker.batcher import Batcher
from worker.engine import pad_rows


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


def test_bulk_passes_are_small_only_while_sync_traffic_is_about():
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch_tokens=100, bulk_batch_tokens=8, wait_s=0)
    batcher.start()
    try:
        batcher.submit([[1, 1]] * 12, priority=1, deadline=time.time() + 10).future.result(5)
        assert max(len(b) for b in forward.batches) > 4  # a job alone: full-size passes
        forward.batches.clear()
        batcher.submit([[3, 3]] * 12, priority=0, deadline=time.time() + 10).future.result(5)
        assert max(len(b) for b in forward.batches) > 4  # interactive passes use the full budget
        forward.batches.clear()
        batcher.submit([[1, 1]] * 12, priority=1, deadline=time.time() + 10).future.result(5)
        assert forward.batches and all(len(b) * 2 <= 8 for b in forward.batches)  # sync seen just now
    finally:
        batcher.stop()


def test_a_lone_submission_does_not_wait_to_fill_a_batch():
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch_tokens=64, wait_s=2.0)  # a wait this long would show
    batcher.start()
    try:
        started = time.monotonic()
        batcher.submit([[1, 2, 3]], priority=0, deadline=time.time() + 10).future.result(5)
        assert time.monotonic() - started < 1.0
    finally:
        batcher.stop()


def test_rows_announced_as_incoming_join_the_forming_batch():
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch_tokens=64, wait_s=5.0)
    batcher.start()
    try:
        with batcher.incoming():  # a second task is still tokenizing while the first submits
            first = batcher.submit([[1, 1]], priority=0, deadline=time.time() + 10)
            time.sleep(0.2)
            assert not first.future.done()  # held back: the announced rows are worth waiting for
            second = batcher.submit([[2, 2]], priority=0, deadline=time.time() + 10)
        first.future.result(5)
        second.future.result(5)
        assert [sorted(row[0] for row in batch) for batch in forward.batches] == [[1, 2]]
    finally:
        batcher.stop()


def test_the_wait_for_incoming_rows_is_bounded():
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch_tokens=64, wait_s=0.05)
    batcher.start()
    try:
        with batcher.incoming():  # announced rows that never come must not hold the batch
            sub = batcher.submit([[3]], priority=0, deadline=time.time() + 10)
            sub.future.result(5)
    finally:
        batcher.stop()


@pytest.mark.parametrize("left", [False, True])
def test_pad_rows_matches_a_row_by_row_build(left):
    rows = [[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15]]
    ids, mask = pad_rows(rows, pad_id=0, left=left)
    assert ids.shape == mask.shape == (4, 5)
    for i, row in enumerate(rows):
        pad = [0] * (5 - len(row))
        assert ids[i].tolist() == (pad + row if left else row + pad)
        assert mask[i].tolist() == ([0] * len(pad) + [1] * len(row) if left else [1] * len(row) + [0] * len(pad))


def test_out_of_memory_retry_runs_after_the_failed_pass_is_released():
    """The halves must not run while the OOM exception (and the frames holding activations) lives."""
    import sys

    class OOM(Exception):
        pass

    handling_during_call = []

    def forward(rows):
        handling_during_call.append(sys.exc_info()[0])
        if len(rows) > 1:
            raise OOM()
        return np.ones((1, 2), dtype=np.float32)

    batcher = Batcher(forward, max_batch_tokens=1000, wait_s=0, is_oom=lambda exc: isinstance(exc, OOM))
    batcher.start()
    try:
        batcher.submit([[1]] * 4, priority=0, deadline=time.time() + 10).future.result(5)
        assert handling_during_call and all(kind is None for kind in handling_during_call)
    finally:
        batcher.stop()


@pytest.mark.parametrize("padded, expected_batches", [(True, 2), (False, 1)])
def test_the_budget_counts_padding_only_for_a_padded_forward(padded, expected_batches):
    # One 40-token row and six 5-token rows: 70 real tokens, 280 once padded to the longest.
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch_tokens=100, wait_s=0, padded=padded)
    rows = [[1] * 40] + [[2] * 5] * 6
    sub = batcher.submit(rows, priority=0, deadline=time.time() + 10)
    batcher.start()
    try:
        sub.future.result(5)
        assert len(forward.batches) == expected_batches
    finally:
        batcher.stop()


def test_the_idle_hook_runs_once_per_idle_spell_after_work(monkeypatch):
    monkeypatch.setattr("worker.batcher.IDLE_S", 0.05)
    calls = []
    batcher = Batcher(RecordingForward(), max_batch_tokens=64, wait_s=0, on_idle=lambda: calls.append(time.monotonic()))
    batcher.start()
    try:
        time.sleep(0.3)
        assert calls == []  # nothing ran yet: nothing to give back
        batcher.submit([[1, 2]], priority=0, deadline=time.time() + 10).future.result(5)
        time.sleep(0.4)  # several idle timeouts pass; the hook still runs once
        assert len(calls) == 1
        batcher.submit([[3]], priority=0, deadline=time.time() + 10).future.result(5)
        time.sleep(0.3)
        assert len(calls) == 2
    finally:
        batcher.stop()


class LayeredForward:
    """A three-'layer' forward that stops after its first layer until told to go on, logging starts and ends."""

    def __init__(self):
        self.events: list[tuple[str, int]] = []
        self.mid_pass = threading.Event()
        self.go_on = threading.Event()

    def __call__(self, rows, pause=None):
        tag = rows[0][0]
        self.events.append(("start", tag))
        for layer in range(3):
            if tag == 1 and layer == 1:  # the bulk pass: hold here while the test submits a sync row
                self.mid_pass.set()
                self.go_on.wait(5)
            if pause is not None:
                pause()
        self.events.append(("end", tag))
        return np.array([[len(r), r[0]] for r in rows], dtype=np.float32)


@pytest.mark.parametrize("preemptible", [True, False])
def test_a_sync_row_runs_inside_a_paused_bulk_pass_when_the_forward_can_pause(preemptible):
    forward = LayeredForward()
    batcher = Batcher(forward, max_batch_tokens=64, wait_s=0, preemptible=preemptible)
    batcher.start()
    try:
        bulk = batcher.submit([[1, 1, 1]], priority=1, deadline=time.time() + 10)
        assert forward.mid_pass.wait(5)
        sync = batcher.submit([[2, 2]], priority=0, deadline=time.time() + 10)
        forward.go_on.set()
        assert sync.future.result(5)[0].tolist() == [2.0, 2.0]
        assert bulk.future.result(5)[0].tolist() == [3.0, 1.0]
        if preemptible:  # the sync pass ran whole between two layers of the bulk pass
            assert forward.events == [("start", 1), ("start", 2), ("end", 2), ("end", 1)]
        else:
            assert forward.events == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    finally:
        batcher.stop()


def test_a_packed_forward_takes_rows_in_arrival_order():
    # Packed, lengths cost nothing extra: an early short row must not wait behind later long ones
    # (longest-first would make the first pass [8, 8] from submissions 2 and 3).
    forward = RecordingForward()
    batcher = Batcher(forward, max_batch_tokens=16, wait_s=0, padded=False)
    subs = [batcher.submit([[tag] * length], priority=1, deadline=time.time() + 10)
            for tag, length in ((1, 2), (2, 8), (3, 8), (4, 8))]
    batcher.start()
    try:
        for sub in subs:
            sub.future.result(5)
        assert [[row[0] for row in batch] for batch in forward.batches] == [[1, 2], [3, 4]]
    finally:
        batcher.stop()


class TimedForward:
    """Every pass takes `seconds` whatever its rows; records each pass's first row id and start time."""

    def __init__(self, seconds: float, layers: int = 1):
        self.seconds, self.layers = seconds, layers
        self.passes: list[int] = []
        self.started: list[float] = []

    def __call__(self, rows, pause=None):
        self.passes.append(rows[0][0])
        self.started.append(time.monotonic())
        for _ in range(self.layers):
            time.sleep(self.seconds / self.layers)
            if pause is not None:
                pause()
        return np.array([[len(r), r[0]] for r in rows], dtype=np.float32)


@pytest.mark.parametrize("preemptible", [False, True])
def test_sync_traffic_that_fills_the_worker_slows_a_job_but_does_not_starve_it(preemptible):
    # 600 sync rows queued at once, one per pass: a backlog the forward thread cannot clear for
    # seconds. With interactive priority absolute, the job's rows (id 1) would run only after
    # every sync row (id 2). With a 20 % floor, once the backlog has lasted 50 ms the job gets
    # about one pass in five (by time: both kinds of pass take as long, so a stall of the box
    # slows both alike), and its 10 rows finish after about 50-60 sync passes. Preemptible: a bulk
    # pass pauses between layers, and a pause must not serve the whole backlog before going on.
    forward = TimedForward(0.004, layers=4 if preemptible else 1)
    batcher = Batcher(forward, max_batch_tokens=1, wait_s=0, preemptible=preemptible,
                      bulk_min_share=0.2, saturated_after_s=0.05)
    sync = [batcher.submit([[2]], priority=0, deadline=time.time() + 60) for _ in range(600)]
    job = batcher.submit([[1]] * 10, priority=1, deadline=time.time() + 60)
    batcher.start()
    try:
        job.future.result(30)
        waiting = sum(not sub.future.done() for sub in sync)
        assert waiting > 300, f"the job finished only after {600 - waiting} of 600 sync passes"
        first_job_pass = forward.passes.index(1)
        # Sync alone until its backlog had lasted the saturation time: a job never jumps a queue
        # that is merely busy. (The clock starts when the first batch is formed, a moment before
        # the first pass starts: hence the 10 ms of slack.)
        assert forward.started[first_job_pass] - forward.started[0] >= 0.04
        for sub in sync:
            sub.future.result(60)
    finally:
        batcher.stop()


def test_with_no_floor_sync_rows_always_go_first():
    forward = TimedForward(0.002)
    batcher = Batcher(forward, max_batch_tokens=1, wait_s=0, bulk_min_share=0.0, saturated_after_s=0.0)
    sync = [batcher.submit([[2]], priority=0, deadline=time.time() + 60) for _ in range(50)]
    job = batcher.submit([[1]] * 3, priority=1, deadline=time.time() + 60)
    batcher.start()
    try:
        job.future.result(10)
        assert all(sub.future.done() for sub in sync)
        assert forward.passes == [2] * 50 + [1] * 3
    finally:
        batcher.stop()


def test_below_saturation_a_paused_bulk_pass_still_serves_a_sync_row_after_sync_only_traffic():
    # The recent forward time is all sync (bulk is below its floor), but the sync queue is not
    # backed up: a sync row arriving mid-pass must still run at the next pause, not after the pass.
    class SlowSyncForward(LayeredForward):
        def __call__(self, rows, pause=None):
            if rows[0][0] == 3:  # the earlier sync traffic: 0.9 s of forward time, against the bulk pass's ~0.1 s
                time.sleep(0.3)
            return super().__call__(rows, pause)

    forward = SlowSyncForward()
    batcher = Batcher(forward, max_batch_tokens=64, wait_s=0, preemptible=True, bulk_min_share=0.5,
                      saturated_after_s=0.05)
    batcher.start()
    try:
        for _ in range(3):
            batcher.submit([[3, 3]], priority=0, deadline=time.time() + 10).future.result(5)
        assert batcher.share.bulk_owed()  # only sync ran: bulk is far below its floor
        forward.events.clear()
        bulk = batcher.submit([[1, 1, 1]], priority=1, deadline=time.time() + 10)
        assert forward.mid_pass.wait(5)
        sync = batcher.submit([[2, 2]], priority=0, deadline=time.time() + 10)
        time.sleep(0.1)  # longer than the saturation time: one waiting row is still not a backlog
        forward.go_on.set()
        assert sync.future.result(5)[0].tolist() == [2.0, 2.0]
        bulk.future.result(5)
        assert forward.events == [("start", 1), ("start", 2), ("end", 2), ("end", 1)]
    finally:
        batcher.stop()
