"""Races of the job store's scripts, driven through the Scheduler, Sweeper and BulkSlots classes on a real Redis.

Each test plays one interleaving that a worker fleet can produce (a worker reaped while it is only
paused, a reply lost and the command retried, a compactor that wakes up late) and checks that the
job still ends once, with every chunk counted once and nothing handed out twice.
"""

from __future__ import annotations

import time

import pytest

from embedserve import redis_keys
from embedserve.ids import new_id
from embedserve.jobs.data import JobData
from embedserve.jobs.records import Job, JobRecords, JobStatus, job_record
from embedserve.jobs.scheduler import Claim, Scheduler
from embedserve.jobs.store.local import LocalStore
from embedserve.jobs.sweeper import Sweeper
from worker.bulk_slots import BulkSlots

MODEL = "race-model"


def submit(scheduler: Scheduler, *, chunks: int, kind: str = "job", owner: str = "owner-a", cap: int = 0,
           job_id: str | None = None) -> str:
    job = Job(id=job_id or new_id("job_"), owner=owner, kind=kind, model=MODEL, status=JobStatus.QUEUED,
              created_at=int(time.time()), total=chunks * 2, chunks=chunks, expires_at=int(time.time()) + 3600)
    scheduler.submit(job_record(job, 10), cap=cap, ttl=3600)
    return job.id


def finish(scheduler: Scheduler, claim: Claim, worker: str, **kwargs) -> str:
    return scheduler.finish(claim, worker, completed=2, failed=0, tokens=10, dim=8, errors=[], **kwargs)


def test_a_compactor_that_dies_gives_the_compaction_back(client):
    """A new record holds compacted "0", which Lua takes for true: the step was never handed back."""
    scheduler = Scheduler(client)
    job_id = submit(scheduler, chunks=1)
    claim = scheduler.claim(MODEL, "w-a")
    assert finish(scheduler, claim, "w-a") == "compact"  # w-a now holds the compaction step
    scheduler.hand_back(Claim(job_id, "c", 0), "w-a", refund=False)  # ... and dies: the reaper hands it back
    again = scheduler.claim(MODEL, "w-b")
    assert again is not None and again.job_id == job_id and again.is_compaction
    assert scheduler.finalize(job_id, "w-b") == "completed"
    assert JobRecords(client).get(job_id).status == JobStatus.COMPLETED


def test_a_chunk_whose_inputs_were_lost_fails_its_rows_and_is_counted(client, tmp_path):
    """A live job's chunk whose input object is gone (lost from the store) finishes with nothing counted, so the
    job would complete with rows missing from its result: compaction fails those indices, `input_lost`, and
    counts them."""
    import pyarrow.dataset as ds

    from embedserve.jobs.chunks import ChunkOutput
    from embedserve.jobs.compaction import Compactor
    from embedserve.jobs.data import job_prefix

    scheduler, data = Scheduler(client), JobData(LocalStore(tmp_path))
    job_id = submit(scheduler, chunks=3)  # 6 inputs: items 0-1, 2-3, 4-5
    for chunk in range(3):
        claim = scheduler.claim(MODEL, "w-a")
        if chunk == 1:  # its inputs were gone: the runner finishes it with no part and nothing counted
            outcome = scheduler.finish(claim, "w-a", completed=0, failed=0, tokens=0, dim=0, errors=[])
        else:
            items = [2 * chunk, 2 * chunk + 1]
            data.put_output(job_id, chunk, ChunkOutput(items=items, rows=[1, 1], tokens=[3, 3], dim=2,
                                                       vectors=b"\0" * 16, errors=[None, None]))
            outcome = finish(scheduler, claim, "w-a")
    assert outcome == "compact"
    Compactor(JobRecords(client), scheduler, data, "w-a").compact(job_id)

    rows = ds.dataset(str(tmp_path / job_prefix(job_id) / "result"), format="parquet").to_table().to_pylist()
    assert [row["index"] for row in rows] == [0, 1, 2, 3, 4, 5]
    assert [row["error"] is not None and "input_lost" in row["error"] for row in rows] == [
        False, False, True, True, False, False]
    job = JobRecords(client).get(job_id)
    assert job.status == JobStatus.COMPLETED and (job.completed, job.failed) == (4, 2)


def test_only_the_holder_of_the_compaction_ends_the_job(client):
    """A compactor reaped while paused, waking after the step went to another worker, must not finalize."""
    scheduler = Scheduler(client)
    job_id = submit(scheduler, chunks=1)
    assert finish(scheduler, scheduler.claim(MODEL, "w-a"), "w-a") == "compact"
    scheduler.hand_back(Claim(job_id, "c", 0), "w-a", refund=False)  # w-a paused past dead-after: reaped
    taken = scheduler.claim(MODEL, "w-b")
    assert taken is not None and taken.is_compaction
    assert scheduler.finalize(job_id, "w-a") == "lost"  # w-a wakes up: not its step any more
    assert JobRecords(client).get(job_id).status == JobStatus.IN_PROGRESS
    assert scheduler.finalize(job_id, "w-b") == "completed"


@pytest.mark.parametrize("kind", ["job", "batch"])
def test_a_chunk_finished_by_its_reaped_worker_is_not_handed_out_again(client, kind):
    """The handed-back copy of a chunk that its paused worker then finished must not run again."""
    scheduler = Scheduler(client)
    job_id = submit(scheduler, chunks=2, kind=kind)
    first = scheduler.claim(MODEL, "w-a")
    assert first.job_id == job_id and first.chunk == "0"
    scheduler.hand_back(first, "w-a", refund=False)  # w-a reaped while paused: chunk 0 queued again
    outcome = finish(scheduler, first, "w-a")  # ... and w-a wakes up and finishes it anyway
    assert outcome == ""
    second = scheduler.claim(MODEL, "w-b")
    assert second is not None and second.chunk == "1", "the finished chunk 0 was handed out again"
    assert finish(scheduler, second, "w-b") == ("compact" if kind == "job" else "completed")
    leftover = scheduler.claim(MODEL, "w-c")
    assert leftover is None, f"handed out {leftover} of a job whose every chunk is done"


def test_a_batch_that_completed_hands_out_nothing_more(client):
    """A batch whose last chunk was finished by its reaped worker is completed: its retry copy is dropped."""
    scheduler = Scheduler(client)
    job_id = submit(scheduler, chunks=1, kind="batch")
    claim = scheduler.claim(MODEL, "w-a")
    scheduler.hand_back(claim, "w-a", refund=False)
    assert finish(scheduler, claim, "w-a") == "completed"
    assert scheduler.claim(MODEL, "w-b") is None
    assert JobRecords(client).get(job_id).completed == 2


def test_a_retried_claim_holds_one_chunk(client):
    """CLAIM run twice for one call (its reply lost, the client retries) answers the same chunk."""
    scheduler = Scheduler(client)
    submit(scheduler, chunks=3)
    first = scheduler.claim(MODEL, "w-a", token="t-1")
    again = scheduler.claim(MODEL, "w-a", token="t-1")
    assert again == first
    assert scheduler.held("w-a") == [f"{first.job_id}|{first.chunk}"]
    other = scheduler.claim(MODEL, "w-a", token="t-2")
    assert other.chunk != first.chunk and other.attempt == 1


def test_a_claim_that_found_nothing_keeps_no_reply(client):
    """An idle slot claims every second: remembering each empty answer for ONCE_TTL_S kept ~960 keys per idle
    worker in Redis. An empty claim changed nothing, so its retry may simply look again."""
    scheduler = Scheduler(client)
    assert scheduler.claim(MODEL, "w-a", token="t-empty") is None
    assert list(client.scan_iter(redis_keys.PREFIX + "once:*")) == []
    job_id = submit(scheduler, chunks=1)
    again = scheduler.claim(MODEL, "w-a", token="t-empty")  # the retry finds the work that came meanwhile
    assert again is not None and again.job_id == job_id and scheduler.held("w-a") == [f"{job_id}|0"]


def test_a_retried_finish_of_the_last_chunk_still_says_compact(client):
    """FINISH run twice: the retry must answer 'compact' too, or nobody compacts the job."""
    scheduler = Scheduler(client)
    job_id = submit(scheduler, chunks=1)
    claim = scheduler.claim(MODEL, "w-a")
    assert finish(scheduler, claim, "w-a", token="f-1") == "compact"
    assert finish(scheduler, claim, "w-a", token="f-1") == "compact"
    assert JobRecords(client).get(job_id).completed == 2  # counted once
    assert scheduler.finalize(job_id, "w-a", token="z-1") == "completed"
    assert scheduler.finalize(job_id, "w-a", token="z-1") == "completed"


def test_a_repeated_hand_back_queues_one_copy(client):
    """Handing one chunk back twice (a retried call, or the reaper and the worker both) queues it once."""
    scheduler = Scheduler(client)
    job_id = submit(scheduler, chunks=1)
    claim = scheduler.claim(MODEL, "w-a")
    scheduler.hand_back(claim, "w-a", refund=False)
    scheduler.hand_back(claim, "w-a", refund=False)
    assert client.lrange(redis_keys.job(job_id) + ":retry", 0, -1) == [b"0"]


def test_a_repeated_submit_leaves_the_job_it_made_alone(client):
    """SUBMIT twice for one id: no reset counters, no second quota entry, no over-cap answer."""
    scheduler = Scheduler(client)
    job_id = submit(scheduler, chunks=2, cap=4)
    finish(scheduler, scheduler.claim(MODEL, "w-a"), "w-a")
    submit(scheduler, chunks=2, cap=4, job_id=job_id)  # would be over the cap of 4 if counted again
    job = JobRecords(client).get(job_id)
    assert job.completed == 2 and job.status == JobStatus.IN_PROGRESS
    assert scheduler.queued_inputs("owner-a") == 4


def test_a_leaked_quota_entry_does_not_block_the_key(client):
    """A quota entry whose job record is gone (a clean-up that missed it) holds nothing against the cap."""
    scheduler = Scheduler(client)
    client.hset(redis_keys.quota("owner-a"), "job_gone", 5)
    assert scheduler.queued_inputs("owner-a") == 0
    submit(scheduler, chunks=2, cap=5)  # 4 inputs under a cap of 5: room, whatever the leaked entry said
    assert scheduler.queued_inputs("owner-a") == 4


class LockTakingStore(LocalStore):
    """A store whose deletes take long enough that the sweeper's lock expired and another process took it."""

    def __init__(self, root, client):
        super().__init__(root)
        self.client = client

    def delete_prefix(self, prefix: str) -> None:
        super().delete_prefix(prefix)
        self.client.set(redis_keys.sweeper_lock(), "another-process")


def test_a_sweep_that_outlived_its_lock_leaves_the_next_holders_lock(client, tmp_path):
    scheduler = Scheduler(client)
    job_id = submit(scheduler, chunks=1)
    client.zadd(redis_keys.jobs_expiry(), {job_id: 1})  # due long ago
    sweeper = Sweeper(JobRecords(client), JobData(LockTakingStore(tmp_path, client)), client)
    assert sweeper.sweep() == 1
    assert client.get(redis_keys.sweeper_lock()) == b"another-process"
    assert sweeper.sweep() == 0  # and that lock is respected


def test_a_finish_after_its_job_ended_says_it_counted_nothing(client):
    """A chunk finished after its job ended (cancelled here) is not counted, and FINISH says so, so its
    worker deletes the part instead of leaving rows in the result that the counts do not have."""
    scheduler = Scheduler(client)
    job_id = submit(scheduler, chunks=2, kind="batch")
    first = scheduler.claim(MODEL, "w-a")
    scheduler.hand_back(first, "w-a", refund=False)  # reaped: chunk 0 queued again
    JobRecords(client).cancel(job_id)  # nothing is running now: the job ends cancelled at once
    assert JobRecords(client).get(job_id).status == JobStatus.CANCELLED
    assert finish(scheduler, first, "w-a") == "late:cancelled"
    assert JobRecords(client).get(job_id).completed == 0


@pytest.mark.parametrize("rows", ["with vectors", "all failed"])
@pytest.mark.parametrize("ends", ["batch completes", "job cancelled"])
def test_a_stale_run_of_a_counted_chunk_leaves_the_ended_jobs_part(ends, rows, client, tmp_path):
    """w-a is reaped while it only paused; w-b runs its chunk again and is counted; the job then ends with that
    part as its result (a batch's output is read from its parts, as is a cancelled job's). w-a wakes up,
    writes the same part again and finishes late: the part must stay, or the ended job loses counted rows.
    A chunk whose every input failed is counted too: its part holds the error rows the counts report."""
    from embedserve.jobs.chunks import ChunkOutput
    from embedserve.jobs.data import part_key
    from worker.chunk_runner import ChunkRunner

    scheduler = Scheduler(client)
    batch = ends == "batch completes"
    job_id = submit(scheduler, chunks=2 if batch else 3, kind="batch" if batch else "job")
    stale = scheduler.claim(MODEL, "w-a")
    scheduler.hand_back(stale, "w-a", refund=False)  # reaped
    again = scheduler.claim(MODEL, "w-b")
    assert again.chunk == stale.chunk
    data = JobData(LocalStore(tmp_path))
    failed = rows == "all failed"
    if failed:
        refused = {"status": 400, "error": {"message": "too long", "type": "invalid_request_error",
                                             "param": "input", "code": "context_length_exceeded"}}
        output = ChunkOutput(items=[0, 1], rows=[0, 0], tokens=[0, 0], dim=0, vectors=b"", errors=[refused] * 2)
    else:
        output = ChunkOutput(items=[0, 1], rows=[1, 1], tokens=[5, 5], dim=2, vectors=b"\1" * 16,
                             errors=[None, None])
    data.put_output(job_id, int(again.chunk), output)
    counts = dict(completed=0, failed=2, tokens=0, dim=0) if failed else dict(completed=2, failed=0, tokens=10, dim=8)
    assert scheduler.finish(again, "w-b", errors=[], **counts) == ""
    if batch:
        last = scheduler.claim(MODEL, "w-b")
        assert finish(scheduler, last, "w-b") == "completed"
    else:
        JobRecords(client).cancel(job_id)
        assert JobRecords(client).get(job_id).status == JobStatus.CANCELLED
    runner = ChunkRunner(JobRecords(client), scheduler, data, service=None, worker_id="w-a", max_attempts=3,
                         time_limit=60)
    assert runner._finish(stale, output) is False  # its finishing step: the part written again, then FINISH
    assert data.store.exists(part_key(job_id, int(stale.chunk))), "a counted chunk's part was deleted"
    record = JobRecords(client).get(job_id)
    assert record.completed == (4 if batch else 2) - (2 if failed else 0)  # each counted chunk once
    assert record.failed == (2 if failed else 0)


def test_the_chunk_that_ends_a_stopped_job_is_counted(client):
    """The last running chunk of a job whose window passed is counted: FINISH answers the final status."""
    scheduler = Scheduler(client)
    job_id = submit(scheduler, chunks=2)
    first = scheduler.claim(MODEL, "w-a")
    client.hset(redis_keys.job(job_id), "expires_at", 1)
    assert scheduler.claim(MODEL, "w-b") is None  # the window passed: nothing more handed out
    assert finish(scheduler, first, "w-a") == "expired"
    assert JobRecords(client).get(job_id).completed == 2


def test_a_compaction_that_fails_in_a_slot_is_handed_back(client):
    """A slot whose chunk's finish handed it the compaction, which then failed (the store away), gives
    the compaction step back, not the finished chunk: otherwise the job stays in_progress while the
    worker lives."""
    scheduler = Scheduler(client)
    job_id = submit(scheduler, chunks=1)
    compactions: list[str] = []

    def run_chunk(claim):
        return finish(scheduler, claim, "w-a") == "compact"

    def compact(job):
        compactions.append(job)
        raise OSError("the job store is away")

    slots = BulkSlots(scheduler, MODEL, "w-a", run_chunk, compact, slots=1)
    slots.start()
    try:
        deadline = time.monotonic() + 10
        while len(compactions) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        slots.drain(5)
    # Handed back and claimed again (by the same slot: the only one); a step left held runs only once.
    assert len(compactions) >= 2 and set(compactions) == {job_id}
    assert scheduler.held("w-a") == []
    again = scheduler.claim(MODEL, "w-b")
    assert again is not None and again.job_id == job_id and again.is_compaction
