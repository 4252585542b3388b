"""Crash safety on a private stack: SIGKILL a worker mid-job, use up attempts, restart Redis.

These tests own their Redis (append-only file on), API and workers, so killing things and a
short dead-after time touch nothing the other tests use. Workers here serve MiniLM under their
own model names, so only they consume these jobs.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests

from tests.integration.helpers import API_KEY
from tests.integration.jobs_helpers import get_job, result_ndjson, submit, texts, wait_finished
from tests.stack import RedisServer, Stack, wait_until

pytestmark = pytest.mark.slow  # starts stacks of its own: API and worker processes (tests/stack.py)

# A short dead-after time: a killed worker's chunks go back to their jobs within seconds (the
# reaper in the API and in the new worker hands them back; the visibility timeout stays at its default).
FAST_REDELIVERY = {"EMBED_WORKER_DEAD_AFTER": "5"}
# A job finishes within the dead-after time plus a minute after the new worker starts.
RECOVERY_S = 5 + 60


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    redis = RedisServer.start("--appendonly", "yes")
    stack = Stack(redis=redis, log_dir=tmp_path_factory.mktemp("crash-logs"))
    try:
        _, url = stack.start_api(EMBED_API_KEYS=API_KEY)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        session.base = url
        yield stack, session
        session.close()
    finally:
        stack.close()
        redis.stop()


def kill_mid_job(stack, http, model: str, n: int, **env) -> dict:
    """Start a worker, submit n inputs, SIGKILL the worker once some (not all) chunks are done."""
    worker = stack.start_worker(model, EMBED_MODEL_NAME=model, **FAST_REDELIVERY, **env)
    job = submit(http, model=model, input=texts(n, f"{model} "))
    wait_until(lambda: get_job(http, job["id"])["request_counts"]["completed"] >= 128, 120,
               "the first chunks to finish", interval=0.05)
    worker.kill()
    at_kill = get_job(http, job["id"])
    assert at_kill["status"] == "in_progress" and at_kill["request_counts"]["completed"] < n, \
        f"the job finished before the kill; make it bigger: {at_kill}"
    return job


def vectors_by_index(lines: list[dict]) -> np.ndarray:
    return np.asarray([line["embedding"] for line in lines], dtype=np.float32)


def test_sigkill_mid_job_then_new_worker_completes_exactly_once(private):
    stack, http = private
    model, n = "crash-minilm", 1000
    job = kill_mid_job(stack, http, model, n)
    stack.start_worker(model, EMBED_MODEL_NAME=model, **FAST_REDELIVERY)
    done = wait_finished(http, job["id"], timeout=RECOVERY_S)
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": n, "completed": n, "failed": 0}
    lines = result_ndjson(http, job["id"])
    assert [line["index"] for line in lines] == list(range(n))  # none missing, none doubled
    # Per-chunk attempt counts go when a job ends; the record keeps how many chunks ran again.
    reruns = stack.redis.client().hget(f"embed:job:{job['id']}", "reruns")
    assert reruns is not None and int(reruns) >= 1, "no chunk was run again after the kill"

    clean = submit(http, model=model, input=texts(n, f"{model} "))
    wait_finished(http, clean["id"], timeout=120)
    assert np.allclose(vectors_by_index(lines), vectors_by_index(result_ndjson(http, clean["id"])), atol=1e-5)


def test_chunk_past_max_attempts_fails_its_items_and_the_job_ends(private):
    stack, http = private
    model, n = "attempts-minilm", 1000
    job = kill_mid_job(stack, http, model, n, EMBED_MAX_ATTEMPTS="1")
    stack.start_worker(model, EMBED_MODEL_NAME=model, EMBED_MAX_ATTEMPTS="1", **FAST_REDELIVERY)
    done = wait_finished(http, job["id"], timeout=RECOVERY_S)
    assert done["status"] == "completed", done
    counts = done["request_counts"]
    assert counts["failed"] > 0 and counts["completed"] + counts["failed"] == n
    assert done["errors"]["data"][0]["code"] == "max_attempts_exceeded"
    lines = result_ndjson(http, job["id"])
    assert [line["index"] for line in lines] == list(range(n))
    assert sum("error" in line for line in lines) == counts["failed"]


def test_redis_restart_with_persistence_loses_no_accepted_job(private):
    stack, http = private
    model = "restart-minilm"
    stack.start_worker(model, EMBED_MODEL_NAME=model).stop()  # the model is known; no worker runs
    job = submit(http, model=model, input=texts(300, "restart "))
    # A second job whose window has passed while it waited (its expiry moved into the past):
    # workers skip its chunks and it ends "expired", each input saying so.
    late = submit(http, model=model, input=texts(40, "late "))
    stack.redis.client().hset(f"embed:job:{late['id']}", "expires_at", 1)
    stack.redis.restart()

    def readable():
        response = http.get(f"{http.base}/v1/jobs/{job['id']}", timeout=10)
        return response.json() if response.status_code == 200 else None

    assert wait_until(readable, 30, "the API to read the job after the restart")["status"] == "queued"
    stack.start_worker(model, EMBED_MODEL_NAME=model)
    done = wait_finished(http, job["id"], timeout=120)
    assert done["request_counts"] == {"total": 300, "completed": 300, "failed": 0}
    assert [line["index"] for line in result_ndjson(http, job["id"])] == list(range(300))

    expired = wait_finished(http, late["id"], timeout=60)
    assert expired["status"] == "expired" and expired["request_counts"]["completed"] == 0
    lines = result_ndjson(http, late["id"])
    assert [line["index"] for line in lines] == list(range(40))
    assert all(line["error"]["code"] == "expired" for line in lines)
