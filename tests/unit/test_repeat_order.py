"""A repeat whose first occurrence's chunk has not run yet is embedded where it is (embedserve/jobs/repeats.py).

Driven through the real ChunkRunner, Scheduler, JobRecords and a local job store on a real Redis, with the
embedded MiniLM behind a real Batcher: chunks run out of order (as after a failover), then the job is
cancelled before the first occurrence's chunk ran. The fault search found this: the repeat was counted
completed while the cancelled job's result held no vector for it.
"""

from __future__ import annotations

import time

import pytest
import torch

from api.bulk.jobs import marked
from api.bulk.result_formats import chunk_outputs
from api.bulk.submission import submit
from embedserve.ids import new_id
from embedserve.jobs.chunks import ChunkSpec
from embedserve.jobs.data import JobData
from embedserve.jobs.records import Job, JobRecords, JobStatus
from embedserve.jobs.repeats import RepeatFinder
from embedserve.jobs.scheduler import Scheduler
from embedserve.jobs.store.local import LocalStore
from worker.batcher import Batcher
from worker.chunk_runner import ChunkRunner
from worker.embedding_service import EmbeddingService
from worker.engine import EmbeddingEngine, resolve_model_source

MODEL = "repeat-order-model"
TEXTS = [["alpha", "beta"], ["gamma", "delta"], ["alpha", "epsilon"]]  # chunk 2's "alpha" repeats chunk 0's


@pytest.fixture(scope="module")
def service():
    engine = EmbeddingEngine(resolve_model_source(""), torch.device("cpu"), torch.float32)
    batcher = Batcher(engine.embed_batch, max_batch_tokens=2048, wait_s=0, padded=engine.pads_batches)
    batcher.start()
    yield EmbeddingService(engine, batcher)
    batcher.stop()


def submit_job(client, data: JobData) -> str:
    finder = RepeatFinder()
    specs, start = [], 0
    for texts in TEXTS:
        items = list(range(start, start + len(texts)))
        specs.append(marked(ChunkSpec(model=MODEL, items=items, counts=[1] * len(texts), inputs=texts), finder))
        start += len(texts)
    assert specs[2].repeats == {"4": 0} and specs[2].repeat_chunks == {"4": 0}
    job = Job(id=new_id("job_"), owner="owner-a", kind="job", model=MODEL, status=JobStatus.QUEUED,
              created_at=int(time.time()), total=start, chunks=0, expires_at=int(time.time()) + 3600)
    submit(Scheduler(client), data, job, specs, cap=0, ttl=3600)
    return job.id


def runner(client, data: JobData, service: EmbeddingService, max_attempts: int = 3) -> ChunkRunner:
    return ChunkRunner(JobRecords(client), Scheduler(client), data, service, worker_id="w-a",
                       max_attempts=max_attempts, time_limit=60)


def test_a_job_cancelled_before_a_repeats_first_occurrence_ran_counts_only_what_its_result_holds(
        client, tmp_path, service):
    data = JobData(LocalStore(tmp_path))
    job_id = submit_job(client, data)
    scheduler = Scheduler(client)
    claims = [scheduler.claim(MODEL, "w-a") for _ in TEXTS]
    assert [c.chunk for c in claims] == ["0", "1", "2"]
    run = runner(client, data, service)
    run.run(claims[2])  # chunk 2 first: its repeat's first occurrence (chunk 0) has not run
    for claim in claims[:2]:  # chunks 0 and 1 go back to the job (their worker died), then it is cancelled
        scheduler.hand_back(claim, "w-a", refund=True)
    JobRecords(client).cancel(job_id)
    job = JobRecords(client).get(job_id)
    assert job.status == JobStatus.CANCELLED
    outputs = list(chunk_outputs(data, job))
    vectors = sum(sum(1 for r in o.rows if r) for o in outputs)
    assert job.completed == vectors == 2  # chunk 2's "alpha" and "epsilon", both embedded there


def test_a_repeat_whose_first_occurrence_finished_is_not_forwarded_again(client, tmp_path, service):
    data = JobData(LocalStore(tmp_path))
    job_id = submit_job(client, data)
    scheduler = Scheduler(client)
    run = runner(client, data, service)
    for _ in TEXTS:
        run.run(scheduler.claim(MODEL, "w-a"))  # in order: chunk 0 has finished when chunk 2 runs
    part = data.output(job_id, 2)
    assert part.repeats == {"4": 0}  # a placeholder, filled from chunk 0 at compaction


def test_a_repeat_of_a_chunk_that_was_given_up_is_embedded_where_it_is(client, tmp_path, service):
    # Chunk 0 is over its attempts (max_attempts 0 here): its rows fail, counted, no vector. Chunk 2's "alpha"
    # has nothing to copy, so it is embedded; cancelled then, the job counts the vectors its result holds.
    data = JobData(LocalStore(tmp_path))
    job_id = submit_job(client, data)
    scheduler = Scheduler(client)
    claims = [scheduler.claim(MODEL, "w-a") for _ in TEXTS]
    runner(client, data, service, max_attempts=0).run(claims[0])
    runner(client, data, service).run(claims[2])
    assert data.output(job_id, 2).repeats is None
    scheduler.hand_back(claims[1], "w-a", refund=True)
    JobRecords(client).cancel(job_id)
    job = JobRecords(client).get(job_id)
    vectors = sum(sum(1 for r in o.rows if r) for o in chunk_outputs(data, job))
    assert (job.completed, job.failed) == (2, 2) and vectors == 2


def test_finished_chunks_are_none_once_the_job_stopped(client, tmp_path, service):
    data = JobData(LocalStore(tmp_path))
    job_id = submit_job(client, data)
    scheduler = Scheduler(client)
    first = scheduler.claim(MODEL, "w-a")
    runner(client, data, service).run(first)
    assert scheduler.finished_chunks(job_id, [0, 1, 2]) == {0}
    JobRecords(client).cancel(job_id)  # chunks 1 and 2 are settled (in the done set) without running
    assert scheduler.finished_chunks(job_id, [0, 1, 2]) == set()
