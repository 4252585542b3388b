"""The worker fleet on a private stack: a worker killed or stopped under load, a cold start, a hung forward.

Each test owns its Redis, API and workers (MiniLM under its own served name), so killing
things touches nothing the other tests use. No test here shortens the visibility timeout: a
dead worker's work must come back through liveness (EMBED_WORKER_DEAD_AFTER), not the broker.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests

from tests.integration.helpers import API_KEY, session_for
from tests.integration.jobs_helpers import get_job, result_ndjson, submit, texts, wait_finished
from tests.stack import private_stack, wait_until

pytestmark = pytest.mark.slow  # starts stacks of its own: API and worker processes (tests/stack.py)

DEAD_AFTER_S = 6
FLEET_ENV = {"EMBED_WORKER_DEAD_AFTER": str(DEAD_AFTER_S)}


@pytest.fixture
def private(tmp_path):
    with private_stack(tmp_path, **FLEET_ENV) as stack:
        yield stack


class SyncLoad:
    """`clients` threads sending one-text sync requests until stopped; every status is kept."""

    def __init__(self, url: str, model: str, clients: int = 8):
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(url, model, i), daemon=True) for i in range(clients)]

    def __enter__(self) -> SyncLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _run(self, url: str, model: str, client: int) -> None:
        with session_for(url) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    response = http.post(url + "/v1/embeddings", json={"model": model, "input": f"client {client} #{n}"},
                                         timeout=120)
                    self.statuses.append(response.status_code)
                except requests.RequestException:
                    self.statuses.append(-1)


def assert_every_index_once(http, job_id: str, n: int) -> None:
    lines = result_ndjson(http, job_id)
    assert [line["index"] for line in lines] == list(range(n))
    failed = [line for line in lines if "embedding" not in line]
    assert not failed, failed[:3]


def test_a_killed_worker_costs_seconds_and_a_stopped_one_finishes_its_work(private):
    """SIGKILL one of two workers under sync load and a job, then SIGTERM another: no client sees an error.

    The sync load runs through each failure and a little past the dead-after time, then stops: on a
    2-core box, 8 closed-loop clients keep the one remaining worker's forward thread busy with
    interactive passes, which go first, and the job would move at its floor share
    (EMBED_BULK_MIN_SHARE) only.
    """
    model, n = "fleet-minilm", 5000
    _, url = private.start_api(EMBED_API_KEYS=API_KEY)
    first = private.start_worker(model, EMBED_MODEL_NAME=model)
    second = private.start_worker(model, EMBED_MODEL_NAME=model)
    http = session_for(url)

    job = submit(http, model=model, input=texts(n, "kill "))
    with SyncLoad(url, model) as load:
        wait_until(lambda: get_job(http, job["id"])["request_counts"]["completed"] >= 200, 120,
                   "the job to get going", interval=0.1)
        first.kill()
        killed_at = time.monotonic()
        time.sleep(DEAD_AFTER_S + 10)
    assert load.statuses and set(load.statuses) == {200}, \
        {s: load.statuses.count(s) for s in set(load.statuses)}
    done = wait_finished(http, job["id"], timeout=DEAD_AFTER_S + 120)
    took = time.monotonic() - killed_at
    assert done["status"] == "completed" and done["request_counts"] == {"total": n, "completed": n, "failed": 0}
    assert took < DEAD_AFTER_S + 10 + 60, f"the job took {took:.0f}s after the kill"
    assert_every_index_once(http, job["id"], n)

    third = private.start_worker(model, EMBED_MODEL_NAME=model)
    job = submit(http, model=model, input=texts(n, "drain "))
    with SyncLoad(url, model) as load:
        wait_until(lambda: get_job(http, job["id"])["request_counts"]["completed"] >= 200, 120,
                   "the job to get going", interval=0.1)
        second.stop(timeout=60)  # SIGTERM: drain
        # Read while the job runs (an ended job's per-chunk bookkeeping is dropped). A chunk the
        # stopped worker handed back had its attempt refunded: re-claimed, it shows 1, not 2.
        attempts = [int(v) for v in private.redis.client().hvals(f"embed:job:{job['id']}:attempts")]
        time.sleep(5)
    assert second.popen.returncode == 0, second.log()[-3000:]
    assert attempts and max(attempts) == 1, "a drained chunk's attempt was not refunded"
    assert load.statuses and set(load.statuses) == {200}, \
        {s: load.statuses.count(s) for s in set(load.statuses)}
    done = wait_finished(http, job["id"], timeout=120)
    assert done["status"] == "completed" and done["request_counts"]["completed"] == n
    assert_every_index_once(http, job["id"], n)
    assert "draining" in second.log()
    assert third.alive()


def test_a_request_sent_before_any_worker_is_answered_by_the_first_one(private):
    model = "cold-minilm"
    _, url = private.start_api(EMBED_API_KEYS=API_KEY, EMBED_MODELS=model)
    http = session_for(url)
    answer: dict = {}

    def call():
        answer["response"] = http.post(url + "/v1/embeddings", json={"model": model, "input": "cold start"},
                                       timeout=120)

    caller = threading.Thread(target=call)
    sent = time.monotonic()
    caller.start()
    time.sleep(10)
    assert caller.is_alive(), "the request did not wait for a worker"
    private.start_worker(model, EMBED_MODEL_NAME=model)
    caller.join(120)
    response = answer["response"]
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["data"][0]["embedding"]) == 384
    assert time.monotonic() - sent < 60


def test_a_declared_model_with_no_worker_queues_jobs_and_refuses_sync_after_the_cold_start_wait(private):
    model = "never-served"
    _, url = private.start_api(EMBED_API_KEYS=API_KEY, EMBED_MODELS=model, EMBED_COLD_START_TIMEOUT="3",
                               EMBED_SYNC_TIMEOUT="2")
    http = session_for(url)
    job = submit(http, model=model, input=["waits for a worker"])
    assert get_job(http, job["id"])["status"] == "queued"
    started = time.monotonic()
    response = http.post(url + "/v1/embeddings", json={"model": model, "input": "x"}, timeout=60)
    assert response.status_code == 503, response.text[:300]
    assert response.json()["error"]["code"] == "no_worker" and int(response.headers["Retry-After"]) > 0
    assert 2.5 < time.monotonic() - started < 20


def test_a_hung_forward_pass_hands_its_chunks_back_and_the_job_still_ends(private):
    model, n = "hang-minilm", 300
    _, url = private.start_api(EMBED_API_KEYS=API_KEY)
    hung = private.start_worker(model, EMBED_MODEL_NAME=model, EMBED_TEST_HANG_TEXT="this text hangs",
                                EMBED_TASK_TIME_LIMIT="4", EMBED_BULK_SLOTS="2")
    http = session_for(url)
    inputs = texts(n, "hang ")
    inputs[5] = "this text hangs"
    job = submit(http, model=model, input=inputs)
    wait_until(lambda: not hung.alive(), 60, "the watchdog to stop the hung worker")
    assert hung.popen.returncode == 3, hung.log()[-3000:]
    assert "EMBED_TASK_TIME_LIMIT" in hung.log()
    # The hung pass's chunk keeps its attempt; the other chunks the worker held were refunded.
    attempts = {k.decode(): int(v) for k, v in
                private.redis.client().hgetall(f"embed:job:{job['id']}:attempts").items()}
    assert attempts.get("0") == 1, attempts
    assert set(attempts.values()) <= {0, 1} and list(attempts.values()).count(1) <= 2, attempts
    # Its chunks went back at once (not after the dead-after time): a healthy worker finishes the job.
    private.start_worker(model, EMBED_MODEL_NAME=model)
    done = wait_finished(http, job["id"], timeout=120)
    assert done["status"] == "completed" and done["request_counts"]["completed"] == n
    assert_every_index_once(http, job["id"], n)


def test_a_paused_worker_declared_dead_is_harmless_when_it_wakes(private):
    """SIGSTOP a worker holding chunks past the dead-after time, let another finish, then SIGCONT it."""
    model, n = "pause-minilm", 2000
    _, url = private.start_api(EMBED_API_KEYS=API_KEY)
    sleeper = private.start_worker(model, EMBED_MODEL_NAME=model)
    http = session_for(url)
    job = submit(http, model=model, input=texts(n, "pause "))
    wait_until(lambda: get_job(http, job["id"])["request_counts"]["completed"] >= 100, 120, "the job to start",
               interval=0.05)
    sleeper.popen.send_signal(signal.SIGSTOP)
    try:
        private.start_worker(model, EMBED_MODEL_NAME=model)
        done = wait_finished(http, job["id"], timeout=DEAD_AFTER_S + 180)
    finally:
        sleeper.popen.send_signal(signal.SIGCONT)
    assert done["status"] == "completed" and done["request_counts"] == {"total": n, "completed": n, "failed": 0}
    # Awake again: its late results changed nothing, and its next heartbeat put it back.
    wait_until(lambda: http.get(f"{url}/v1/models/{model}", timeout=30).json()["workers"] == 2, 30,
               "the woken worker to re-register")
    again = get_job(http, job["id"])
    assert again["request_counts"] == {"total": n, "completed": n, "failed": 0}
    assert_every_index_once(http, job["id"], n)
    assert http.post(url + "/v1/embeddings", json={"model": model, "input": "after"}, timeout=60).status_code == 200
