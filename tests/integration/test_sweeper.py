"""Expiry on a real Redis and a real local store: the sweeper deletes a job's data, its record says
`expired`; a job whose time is up stops being handed out. (The full stack's expiry takes
EMBED_JOB_TTL's minimum of a minute plus a sweep: these drive the same code directly.)"""

from __future__ import annotations

import time

import pytest

from embedserve import defaults, redis_keys
from embedserve.jobs.chunks import ChunkSpec
from embedserve.jobs.data import JobData
from embedserve.jobs.records import Job, JobRecords, JobStatus, job_record
from embedserve.jobs.scheduler import Scheduler
from embedserve.jobs.store import open_store
from embedserve.jobs.sweeper import SWEEP_INTERVAL_S, Sweeper
from tests.integration.helpers import API_KEY, session_for
from tests.integration.jobs_helpers import submit, wait_finished
from tests.stack import RedisServer, private_stack, wait_until

MODEL = "sweep-model"


@pytest.fixture
def parts(tmp_path):
    redis = RedisServer.start()
    client = redis.client()
    data = JobData(open_store((tmp_path / "store").as_uri()))
    yield client, data, Scheduler(client), JobRecords(client)
    redis.stop()


def make_job(data: JobData, scheduler: Scheduler, job_id: str, expires_at: int, chunks: int = 3) -> None:
    now = int(time.time())
    specs = [ChunkSpec(model=MODEL, items=[i], counts=[1], inputs=[f"text {i}"]) for i in range(chunks)]
    job = Job(id=job_id, owner="owner", kind="job", model=MODEL, status=JobStatus.QUEUED, created_at=now,
              total=chunks, chunks=data.put_inputs(job_id, specs), expires_at=expires_at)
    scheduler.submit(job_record(job, defaults.JOB_ERROR_SAMPLE), cap=0, ttl=3600)


def test_the_sweeper_deletes_expired_data_and_the_record_answers_expired(parts):
    client, data, scheduler, records = parts
    make_job(data, scheduler, "job_due", expires_at=int(time.time()) - 1)
    make_job(data, scheduler, "job_later", expires_at=int(time.time()) + 3600)
    assert data.store.list("jobs/job_due/")

    assert Sweeper(records, data, client).sweep() >= 1
    assert data.store.list("jobs/job_due/") == []
    assert data.store.list("jobs/job_later/")  # not due: untouched
    due = records.get("job_due")
    assert due is not None and due.status == JobStatus.EXPIRED and due.expired_at
    assert records.get("job_later").status == JobStatus.QUEUED
    assert records.count_by_status()["expired"] == 1
    assert scheduler.queued_inputs("owner") == 3  # the expired job's inputs left the quota


def test_a_job_past_its_time_is_not_handed_out_and_ends_expired(parts):
    client, data, scheduler, records = parts
    make_job(data, scheduler, "job_late", expires_at=int(time.time()) + 2)
    first = scheduler.claim(MODEL, "worker-1")
    assert first is not None and first.job_id == "job_late"
    time.sleep(3)
    assert scheduler.claim(MODEL, "worker-1") is None
    # The chunk in hand finishes late: counted, and the job ends expired (the rest never ran).
    assert scheduler.finish(first, "worker-1", completed=1, failed=0, tokens=3, dim=4, errors=[]) == "expired"
    job = records.get("job_late")
    assert job.status == JobStatus.EXPIRED and job.completed == 1


@pytest.mark.slow
def test_a_worker_sweeps_with_no_api_up(tmp_path):
    """Expiry needs neither the API nor a worker alone: here only a worker runs."""
    with private_stack(tmp_path) as stack:
        stack.start_worker(MODEL, EMBED_MODEL_NAME=MODEL)
        client = stack.redis.client()
        data = JobData(open_store((tmp_path / "store").as_uri()))
        make_job(data, Scheduler(client), "job_due", expires_at=int(time.time()) + 1)
        wait_until(lambda: not data.store.list("jobs/job_due/"), SWEEP_INTERVAL_S * 2 + 10,
                   "the worker's sweeper to delete the expired job's data", interval=1)
        assert JobRecords(client).get("job_due").status == JobStatus.EXPIRED


@pytest.mark.slow
def test_an_expired_jobs_result_is_410_job_expired_before_any_byte(tmp_path):
    """A completed job whose data the sweeper deleted, and a job that expired before running: 410, not a
    200 that breaks mid-stream or an empty list. Expiry is brought forward by moving the job's place in
    the expiry index, as the clock would; the sweep is the real Sweeper on the stack's Redis and store."""
    with private_stack(tmp_path) as stack:
        _, url = stack.start_api(EMBED_API_KEYS=API_KEY)
        stack.start_worker(MODEL, EMBED_MODEL_NAME=MODEL)
        http = session_for(url)
        done = submit(http, model=MODEL, input=["one", "two", "three"])
        assert wait_finished(http, done["id"])["status"] == "completed"
        client = stack.redis.client()
        data = JobData(open_store((stack.log_dir / "store").resolve().as_uri()))
        # The sweeper deletes the data first and marks the record a moment later: between the two,
        # the record still says completed.
        data.delete(done["id"])
        for accept in ("application/json", "application/x-ndjson", "application/vnd.apache.parquet"):
            response = http.get(f"{url}/v1/jobs/{done['id']}/result", headers={"Accept": accept}, timeout=30)
            assert response.status_code == 410, (accept, response.status_code, response.text[:200])
            assert response.json()["error"]["code"] == "job_expired"
        client.zadd(redis_keys.jobs_expiry(), {done["id"]: 1})
        assert Sweeper(JobRecords(client), data, client).sweep() >= 1
        assert http.get(f"{url}/v1/jobs/{done['id']}", timeout=30).json()["status"] == "expired"
        response = http.get(f"{url}/v1/jobs/{done['id']}/result", timeout=30)
        assert response.status_code == 410 and response.json()["error"]["code"] == "job_expired"
