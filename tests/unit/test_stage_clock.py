"""The worker's half of the sync stage account: a real batcher's stamps, read by the clock of the waiting thread."""

from __future__ import annotations

import time

import numpy as np

from worker import stage_clock
from worker.batcher import Batcher
from worker.embedding_service import wait_rows

FORWARD_S = 0.05


def slow_forward(rows):
    time.sleep(FORWARD_S)
    return np.ones((len(rows), 2), dtype=np.float32)


def test_a_sync_chunk_s_stages_name_the_forward_and_add_up_to_its_time_on_the_worker():
    batcher = Batcher(slow_forward, max_batch_tokens=64, wait_s=0)
    batcher.start()
    try:
        with stage_clock.timing() as clock:
            clock.claim_done()
            deadline = time.time() + 10
            wait_rows(batcher.submit([[1, 2, 3]], priority=0, deadline=deadline), deadline, "embedding")
            stages = clock.stages()
    finally:
        batcher.stop()
    durations = {k: v for k, v in stages.items() if not k.endswith("_at")}
    assert set(durations) == {"claim", "tokenize", "batch_wait", "forward", "wake", "encode"}
    assert all(v >= 0 for v in durations.values())
    assert FORWARD_S <= durations["forward"] < FORWARD_S + 0.5
    # On one clock the stages cover the whole span between the two wall-clock marks.
    assert abs(sum(durations.values()) - (stages["replied_at"] - stages["picked_at"])) < 0.01


def test_a_wait_outside_a_sync_task_notes_nothing_and_a_chunk_without_a_pass_is_all_encode():
    batcher = Batcher(slow_forward, max_batch_tokens=64, wait_s=0)
    batcher.start()
    try:
        deadline = time.time() + 10
        wait_rows(batcher.submit([[1]], priority=1, deadline=deadline), deadline, "embedding")  # a job's: no clock
        with stage_clock.timing() as clock:
            stages = clock.stages()  # e.g. a refusal before any pass
    finally:
        batcher.stop()
    assert set(stages) == {"picked_at", "claim", "encode", "replied_at"}
