"""Native bulk jobs over HTTP against the real stack: volume, formats, errors, cancel, delete."""

from __future__ import annotations

import numpy as np
import pytest

from embedserve.fleet.catalogue import Catalogue, ModelCard
from tests.integration.helpers import MINILM, assert_openai_error
from tests.integration.jobs_helpers import (
    matrix,
    result_json,
    result_msgpack,
    result_ndjson,
    submit,
    sync_vectors,
    texts,
    wait_finished,
)


@pytest.mark.slow
def test_5000_input_job_progresses_and_matches_sync(http):
    inputs = texts(5000)
    job = submit(http, model=MINILM, input=inputs)
    assert job["status"] == "queued" and job["object"] == "embedding.job"
    assert job["request_counts"] == {"total": 5000, "completed": 0, "failed": 0}
    seen: list[int] = []
    done = wait_finished(http, job["id"], seen=seen)
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": 5000, "completed": 5000, "failed": 0}
    assert done["started_at"] and done["completed_at"] >= done["started_at"]
    assert any(0 < count < 5000 for count in seen), f"progress never seen between 0 and 5000: {sorted(set(seen))}"
    assert seen == sorted(seen), "completed count went backwards"

    listed = result_json(http, job["id"])
    assert [d["index"] for d in listed["data"]] == list(range(5000))
    assert listed["model"] == MINILM and listed["usage"]["prompt_tokens"] > 5000
    vectors = np.asarray([d["embedding"] for d in listed["data"]], dtype=np.float32)
    assert vectors.shape == (5000, 384)

    # The same texts through the sync path give the same vectors (a spread-out sample of 500).
    sample = list(range(0, 5000, 10)) + [4999]
    expected = sync_vectors(http, MINILM, [inputs[i] for i in sample])
    assert np.allclose(vectors[sample], expected, atol=1e-5)

    lines = result_ndjson(http, job["id"])
    assert [line["index"] for line in lines] == list(range(5000))
    assert np.array_equal(np.asarray([line["embedding"] for line in lines], dtype=np.float32), vectors)

    packed = result_msgpack(http, job["id"])
    assert packed["shape"] == [5000, 384] and packed["errors"] == []
    assert packed["usage"] == listed["usage"]
    assert np.array_equal(matrix(packed), vectors)


@pytest.mark.slow
def test_prefer_respond_async_on_embeddings_makes_a_job(http):
    response = http.post(http.base + "/v1/embeddings", json={"model": MINILM, "input": ["a", "b", "c"]},
                         headers={"Prefer": "respond-async"}, timeout=60)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert wait_finished(http, job["id"])["request_counts"]["completed"] == 3
    assert [d["index"] for d in result_json(http, job["id"])["data"]] == [0, 1, 2]


@pytest.mark.slow
def test_result_before_finish_is_202_with_retry_after(http, redis_server):
    """A job that cannot have finished: its model is in the catalogue but has no worker, so it waits."""
    name = "no-worker-for-202"
    client = redis_server.client()
    seconds, _ = client.time()
    Catalogue(client).announce(ModelCard(name=name, dim=8, max_length=16), seconds)
    job = None
    try:
        job = submit(http, model=name, input=texts(3, "early "))
        for accept in ("application/json", "application/x-ndjson", "application/msgpack"):
            response = http.get(f"{http.base}/v1/jobs/{job['id']}/result", headers={"Accept": accept}, timeout=30)
            assert response.status_code == 202, response.text[:500]
            assert response.headers["Content-Type"].startswith("application/json")
            assert int(response.headers["Retry-After"]) >= 1
            body = response.json()
            assert body["id"] == job["id"] and body["status"] == "queued"
            assert body["request_counts"] == {"total": 3, "completed": 0, "failed": 0}
        # Once it ends (here: cancelled, no chunk ever ran), the same URL answers 200 with the result.
        assert http.post(f"{http.base}/v1/jobs/{job['id']}/cancel", timeout=30).status_code == 200
        assert wait_finished(http, job["id"])["status"] == "cancelled"
        lines = result_ndjson(http, job["id"])
        assert [line["error"]["code"] for line in lines] == ["cancelled"] * 3
    finally:
        if job is not None:
            http.delete(f"{http.base}/v1/jobs/{job['id']}", timeout=30)
        Catalogue(client).remove(name)


@pytest.mark.slow
def test_bad_item_fails_alone_and_the_job_ends(http):
    inputs = ["fine one", "word " * 1000, "fine two"]
    job = submit(http, model=MINILM, input=inputs, encoding_format="base64")
    done = wait_finished(http, job["id"])
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    assert done["errors"]["data"][0]["index"] == 1
    assert done["errors"]["data"][0]["code"] == "context_length_exceeded"
    assert "input[1]" in done["errors"]["data"][0]["message"]  # named by its index in the job
    lines = result_ndjson(http, job["id"])
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert "error" in lines[1] and lines[1]["error"]["code"] == "context_length_exceeded"
    assert isinstance(lines[0]["embedding"], str)  # base64, as the job asked
    packed = result_msgpack(http, job["id"])
    assert packed["errors"][0]["index"] == 1
    assert np.isnan(matrix(packed)[1]).all() and not np.isnan(matrix(packed)[[0, 2]]).any()
    listed = result_json(http, job["id"])
    assert listed["data"][1]["embedding"] is None and listed["data"][1]["error"]["code"] == "context_length_exceeded"


@pytest.mark.slow
def test_job_options_reach_the_worker(http):
    job = submit(http, model=MINILM, input=["hello world"], dimensions=64)
    wait_finished(http, job["id"])
    vector = np.asarray(result_json(http, job["id"])["data"][0]["embedding"])
    assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1) < 1e-5


@pytest.mark.slow
def test_cancel_stops_remaining_chunks_and_keeps_finished_ones(http):
    job = submit(http, model=MINILM, input=texts(6000, "cancel "))
    response = http.post(f"{http.base}/v1/jobs/{job['id']}/cancel", timeout=30)
    assert response.status_code == 200
    assert response.json()["status"] in ("cancelling", "cancelled")
    done = wait_finished(http, job["id"])
    assert done["status"] == "cancelled" and done["cancelled_at"]
    counts = done["request_counts"]
    assert counts["completed"] < 6000 and counts["failed"] == 0
    lines = result_ndjson(http, job["id"])
    assert [line["index"] for line in lines] == list(range(6000))
    embedded = [line for line in lines if "embedding" in line]
    assert len(embedded) == counts["completed"]
    assert all(line["error"]["code"] == "cancelled" for line in lines if "error" in line)
    # Cancelling a finished job changes nothing.
    again = http.post(f"{http.base}/v1/jobs/{job['id']}/cancel", timeout=30).json()
    assert again["status"] == "cancelled"


@pytest.mark.slow
def test_delete_drops_the_job(http, stack):
    job = submit(http, model=MINILM, input=["to be deleted"])
    wait_finished(http, job["id"])
    response = http.delete(f"{http.base}/v1/jobs/{job['id']}", timeout=30)
    assert response.status_code == 200 and response.json()["deleted"] is True
    assert_openai_error(http.get(f"{http.base}/v1/jobs/{job['id']}", timeout=30), 404, "not_found")
    assert_openai_error(http.get(f"{http.base}/v1/jobs/{job['id']}/result", timeout=30), 404, "not_found")
    assert not list(stack.redis.client().scan_iter(f"embed:job:{job['id']}*"))


@pytest.mark.slow
def test_list_is_own_newest_first_and_paginates(http, api_url, other_http):
    first = submit(http, model=MINILM, input=["list one"])
    second = submit(http, model=MINILM, input=["list two"])
    page = http.get(http.base + "/v1/jobs?limit=1", timeout=30).json()
    assert [j["id"] for j in page["data"]] == [second["id"]] and page["has_more"] is True
    page = http.get(http.base + f"/v1/jobs?limit=1&after={second['id']}", timeout=30).json()
    assert [j["id"] for j in page["data"]] == [first["id"]]
    other = other_http
    other_ids = {j["id"] for j in other.get(api_url + "/v1/jobs?limit=100", timeout=30).json()["data"]}
    assert first["id"] not in other_ids and second["id"] not in other_ids


@pytest.mark.slow
@pytest.mark.parametrize("method,suffix", [
    ("get", ""), ("get", "/result"), ("post", "/cancel"), ("delete", ""),
])
def test_another_key_gets_the_same_404_as_an_unknown_id(http, api_url, other_http, method, suffix):
    job = submit(http, model=MINILM, input=["mine only"])
    other = other_http
    theirs = getattr(other, method)(f"{api_url}/v1/jobs/{job['id']}{suffix}", timeout=30)
    unknown = getattr(other, method)(f"{api_url}/v1/jobs/job_{'0' * 32}{suffix}", timeout=30)
    assert_openai_error(theirs, 404, "not_found")
    assert_openai_error(unknown, 404, "not_found")
    assert theirs.json()["error"]["message"].replace(job["id"], "ID") == \
        unknown.json()["error"]["message"].replace(f"job_{'0' * 32}", "ID")
    # Their cancel or delete did nothing to it.
    assert wait_finished(http, job["id"])["status"] == "completed"


@pytest.mark.slow
@pytest.mark.parametrize("body,status,code,param", [
    ({"model": MINILM, "input": ["ok", ""]}, 400, None, "input"),
    ({"model": MINILM, "input": []}, 400, None, "input"),
    ({"model": "no-such-model", "input": ["x"]}, 404, "model_not_found", "model"),
    ({"model": MINILM, "input": ["x"], "dimensions": 0}, 400, None, "dimensions"),
    ({"model": MINILM, "input": [[101, 999999, 102]]}, 400, "invalid_token_id", "input"),
])
def test_bad_job_bodies_create_nothing(http, body, status, code, param):
    before = http.get(http.base + "/v1/jobs?limit=100", timeout=30).json()["data"]
    response = http.post(http.base + "/v1/jobs", json=body, timeout=30)
    assert_openai_error(response, status, code, param)
    after = http.get(http.base + "/v1/jobs?limit=100", timeout=30).json()["data"]
    assert [j["id"] for j in after] == [j["id"] for j in before]


@pytest.mark.slow
@pytest.mark.parametrize("accept", ["text/html", "application/xml", "image/png"])
def test_unsupported_accept_is_406(http, accept):
    job = submit(http, model=MINILM, input=["accept test"])
    wait_finished(http, job["id"])
    response = http.get(f"{http.base}/v1/jobs/{job['id']}/result", headers={"Accept": accept}, timeout=30)
    assert_openai_error(response, 406, "not_acceptable")


@pytest.mark.slow
@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "limit=101"])
def test_bad_list_params(http, query):
    assert_openai_error(http.get(f"{http.base}/v1/jobs?{query}", timeout=30), 400, None, "limit")


def test_cancelling_a_job_that_just_vanished_is_not_an_error(redis_server):
    """The route looks a job up, then cancels it: a delete in between must not crash the cancel."""
    from embedserve.jobs.records import JobRecords

    assert JobRecords(redis_server.client(), 10).cancel("job_" + "0" * 32) is None
