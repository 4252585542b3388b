"""Jobs at scale on private stacks: data in the job store (a directory, or S3 over HTTP), a bounded
Redis, results readable straight from the store, per-key quotas, and fair share between keys.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow.dataset as ds
import pyarrow.fs
import pytest
import requests

from tests.integration.helpers import API_KEY, OTHER_KEY, session_for
from tests.integration.jobs_helpers import (
    get_job,
    result_json,
    result_ndjson,
    submit,
    sync_vectors,
    texts,
    wait_finished,
)
from tests.stack import private_stack, wait_until

pytestmark = pytest.mark.slow  # starts stacks of its own: API and worker processes (tests/stack.py)

MODEL = "store-minilm"


@pytest.fixture
def private(tmp_path):
    with private_stack(tmp_path) as stack:
        yield stack


def used_memory(stack) -> int:
    return int(stack.redis.client().info("memory")["used_memory"])


def parquet_vectors(dataset: ds.Dataset) -> tuple[list[int], np.ndarray]:
    table = dataset.to_table().sort_by("index")
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    return table.column("index").to_pylist(), vectors


def test_a_20000_input_job_leaves_redis_small_and_its_parquet_is_readable_from_the_directory(private):
    n = 20_000
    store_dir = private.log_dir / "store"
    _, url = private.start_api(EMBED_API_KEYS=API_KEY)
    private.start_worker(MODEL, EMBED_MODEL_NAME=MODEL)
    http = session_for(url)
    inputs = texts(n, "scale ")
    before = used_memory(private)
    job = submit(http, model=MODEL, input=inputs)
    done = wait_finished(http, job["id"], timeout=600)
    assert done["status"] == "completed" and done["request_counts"]["completed"] == n
    grown = used_memory(private) - before
    # A few small keys per job, whatever its size. (About 0.6 MB of the growth is Redis's own
    # bookkeeping, the same for a 5,000-input job; the old design held ~1,870 bytes per input here.)
    assert grown < 1 << 20, f"Redis grew {grown} bytes for {n} inputs"

    api = {d["index"]: d["embedding"] for d in result_json(http, job["id"])["data"]}
    indices, vectors = parquet_vectors(ds.dataset(str(store_dir / "jobs" / job["id"] / "result"), format="parquet"))
    assert indices == list(range(n))
    assert np.array_equal(vectors, np.asarray([api[i] for i in range(n)], dtype=np.float32))
    sample = [0, 1234, n - 1]
    assert np.allclose(vectors[sample], sync_vectors(http, MODEL, [inputs[i] for i in sample]), atol=1e-5)
    # Compacted: a few files, not one per chunk; the per-chunk parts are gone.
    assert not list((store_dir / "jobs" / job["id"]).glob("parts/*"))

    http.delete(f"{url}/v1/jobs/{job['id']}", timeout=30).raise_for_status()
    assert not (store_dir / "jobs" / job["id"]).exists()
    assert http.get(f"{url}/v1/jobs/{job['id']}", timeout=30).status_code == 404


def test_jobs_run_with_an_s3_store_through_a_worker_crash(private, s3_server, tmp_path):
    """S3 store: a worker SIGKILLed mid-job, a new one finishes it; every index once; Parquet read from S3."""
    n = 2000
    env = {**s3_server.env, "EMBED_JOB_STORE": s3_server.url("jobs-s3"), "EMBED_WORKER_DEAD_AFTER": "4"}
    _, url = private.start_api(EMBED_API_KEYS=API_KEY, **env)
    first = private.start_worker(MODEL, EMBED_MODEL_NAME=MODEL, **env)
    http = session_for(url)
    inputs = texts(n, "s3 ")
    job = submit(http, model=MODEL, input=inputs)
    wait_until(lambda: get_job(http, job["id"])["request_counts"]["completed"] >= 200, 120, "the job to start",
               interval=0.05)
    first.kill()
    assert get_job(http, job["id"])["status"] == "in_progress"
    private.start_worker(MODEL, EMBED_MODEL_NAME=MODEL, **env)
    done = wait_finished(http, job["id"], timeout=300)
    assert done["status"] == "completed" and done["request_counts"]["completed"] == n
    lines = result_ndjson(http, job["id"])
    assert [line["index"] for line in lines] == list(range(n))

    # The result straight from S3, as a user would read it (pyarrow's own S3 client).
    bucket, _, prefix = s3_server.url("jobs-s3")[len("s3://"):].partition("/")
    fs = pyarrow.fs.S3FileSystem(endpoint_override=s3_server.env["AWS_ENDPOINT_URL"], access_key="test",
                                 secret_key="test", region="us-east-1", scheme="http")
    indices, vectors = parquet_vectors(ds.dataset(f"{bucket}/{prefix}/jobs/{job['id']}/result", filesystem=fs,
                                                  format="parquet"))
    assert indices == list(range(n))
    assert np.array_equal(vectors, np.asarray([line["embedding"] for line in lines], dtype=np.float32))

    # A worker whose store is not the API's (a local directory on "another host") refuses to start.
    stray = private.spawn("worker-stray", "worker", EMBED_MODEL_NAME=MODEL,
                          EMBED_JOB_STORE=(tmp_path / "elsewhere").resolve().as_uri())
    stray.popen.wait(120)
    assert stray.popen.returncode == 2 and "is not the API's" in stray.log()


def test_an_api_killed_mid_submit_leaves_no_job_behind(private):
    model = "submit-model"  # declared only: nothing runs, so what the API left is what we see
    api, url = private.start_api(EMBED_API_KEYS=API_KEY, EMBED_MODELS=model)
    body = {"model": model, "input": texts(150_000, "half ")}
    client = private.redis.client()
    sender = threading.Thread(target=lambda: _post_quietly(url, body), daemon=True)
    sender.start()
    # Killed once the submission has begun writing inputs: it is noted as pending first, then its
    # first input file appears in the store (killed between the two, there is nothing to sweep).
    def writing() -> bool:
        ids = client.zrange("embed:jobs:pending", 0, 0)
        return bool(ids) and (private.log_dir / "store" / "jobs" / ids[0].decode()).exists()

    wait_until(writing, 60, "the submission to begin writing inputs", interval=0.01)
    api.kill_tree()  # the gunicorn worker serving the request, and its master
    sender.join(60)
    pending = [i.decode() for i in client.zrange("embed:jobs:pending", 0, -1)]
    assert pending and not client.exists(f"embed:job:{pending[0]}"), "a job record exists for a cut submission"
    assert client.zcard("embed:jobs:status:queued") == 0
    _, url = private.start_api(EMBED_API_KEYS=API_KEY, EMBED_MODELS=model)
    assert session_for(url).get(url + "/v1/jobs", timeout=30).json()["data"] == []
    # The half-written inputs are the sweeper's once the submission is an hour old.
    from embedserve.jobs.sweeper import PENDING_GIVE_UP_S

    client.zadd("embed:jobs:pending", {pending[0]: time.time() - PENDING_GIVE_UP_S - 1})
    client.delete("embed:sweeper-lock")  # the killed API may have died holding it (it expires by itself)
    store_dir = private.log_dir / "store" / "jobs" / pending[0]
    assert store_dir.exists()
    wait_until(lambda: not store_dir.exists(), 90, "the sweeper to remove the cut submission's inputs", interval=1)


def _post_quietly(url: str, body: dict) -> None:
    try:
        session_for(url).post(url + "/v1/jobs", json=body, timeout=120)
    except requests.RequestException:
        pass  # the API was killed under it


def test_quota_and_rate_limits_hold_for_jobs(private):
    model = "quota-model"  # declared, never served: its jobs stay queued
    _, url = private.start_api(EMBED_API_KEYS=f"{API_KEY},{OTHER_KEY}", EMBED_MODELS=model,
                               EMBED_MAX_QUEUED_INPUTS_PER_KEY="100")
    http, other = session_for(url), session_for(url, OTHER_KEY)
    too_big = http.post(url + "/v1/jobs", json={"model": model, "input": ["x"] * 101}, timeout=30)
    assert too_big.status_code == 400 and too_big.json()["error"]["code"] == "queue_limit_exceeded"
    submit(http, model=model, input=["a"] * 80)
    over = http.post(url + "/v1/jobs", json={"model": model, "input": ["b"] * 30}, timeout=30)
    assert over.status_code == 429 and over.json()["error"]["code"] == "queue_limit_exceeded"
    assert int(over.headers["Retry-After"]) > 0
    assert len(http.get(url + "/v1/jobs", timeout=30).json()["data"]) == 1  # nothing stored for the refusals
    submit(other, model=model, input=["c"] * 30)  # another key has its own cap

    # A managed key's own cap wins over the static keys' setting.
    from embedserve.apikeys import KeyStore

    managed_key, _ = KeyStore(private.redis.client()).create("capped", max_queued_inputs=10)
    managed = session_for(url, managed_key)
    refused = managed.post(url + "/v1/jobs", json={"model": model, "input": ["m"] * 11}, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "queue_limit_exceeded"
    submit(managed, model=model, input=["m"] * 10)

    _, limited = private.start_api(EMBED_API_KEYS=API_KEY, EMBED_MODELS=model, EMBED_STATIC_KEY_RPM="3")
    http = session_for(limited)
    statuses = [http.post(limited + "/v1/embeddings", json={"model": model, "input": ["x"]},
                          headers={"Prefer": "respond-async"}, timeout=30).status_code for _ in range(3)]
    statuses += [http.post(limited + "/v1/jobs", json={"model": model, "input": ["x"]}, timeout=30).status_code]
    assert statuses == [202, 202, 202, 429]


def test_a_small_job_of_another_key_is_not_stuck_behind_a_big_one(private):
    _, url = private.start_api(EMBED_API_KEYS=f"{API_KEY},{OTHER_KEY}")
    private.start_worker(MODEL, EMBED_MODEL_NAME=MODEL)
    big_key, small_key = session_for(url), session_for(url, OTHER_KEY)
    small_inputs = texts(200, "small ")

    alone = submit(small_key, model=MODEL, input=small_inputs)
    idle_s = wait_finished(small_key, alone["id"], timeout=120)["completed_at"] - alone["created_at"]

    big = submit(big_key, model=MODEL, input=texts(8000, "big "))
    time.sleep(2)
    started = time.monotonic()
    small = submit(small_key, model=MODEL, input=small_inputs)
    wait_finished(small_key, small["id"], timeout=300)
    waited = time.monotonic() - started
    assert get_job(big_key, big["id"])["status"] == "in_progress", "the big job ended first: make it bigger"
    # Turns alternate between keys: about twice the idle time (plus a second of timestamp rounding).
    assert waited <= 3 * max(idle_s, 1) + 2, f"small job took {waited:.1f}s with the big one running, {idle_s}s idle"
    big_key.post(f"{url}/v1/jobs/{big['id']}/cancel", timeout=30).raise_for_status()
    assert wait_finished(big_key, big["id"], timeout=60)["status"] == "cancelled"
