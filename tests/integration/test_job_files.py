"""Jobs over uploaded user_data files (`POST /v1/files` purpose=user_data, `POST /v1/jobs` input_file_id)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.integration.helpers import MINILM, assert_openai_error
from tests.integration.jobs_helpers import result_json, result_ndjson, submit, sync_vectors, upload, wait_finished

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)


def test_jsonl_with_ids_and_a_bad_line_runs_as_a_job(http):
    texts = [f"file input number {i}" for i in range(300)]
    lines = []
    for i, text in enumerate(texts):
        lines.append(json.dumps({"text": text, "id": f"doc-{i}"}) if i % 2 else json.dumps(text))
        if i == 10:
            lines.append("")  # blank: skipped, not counted
        if i == 20:
            lines.append("{not json")  # fails alone, at index 21
    content = ("\n".join(lines) + "\n").encode()
    response = upload(http, "inputs.JSONL", content)
    assert response.status_code == 200, response.text
    uploaded = response.json()
    assert uploaded["purpose"] == "user_data" and uploaded["bytes"] == len(content)
    assert http.get(f"{http.base}/v1/files/{uploaded['id']}/content", timeout=30).content == content

    job = submit(http, model=MINILM, input_file_id=uploaded["id"])
    assert job["request_counts"]["total"] == 301
    done = wait_finished(http, job["id"])
    assert done["request_counts"] == {"total": 301, "completed": 300, "failed": 1}, done
    assert done["errors"]["data"][0]["index"] == 21

    expected_ids = [f"doc-{i}" if i % 2 else None for i in range(300)]
    expected_ids.insert(21, None)
    listed = result_json(http, job["id"])["data"]
    assert [d["index"] for d in listed] == list(range(301))
    assert [d.get("id") for d in listed] == expected_ids
    assert listed[21]["embedding"] is None and listed[21]["error"]["code"] == "invalid_input"
    good = [d["embedding"] for i, d in enumerate(listed) if i != 21]
    np.testing.assert_allclose(np.asarray(good, dtype=np.float32), sync_vectors(http, MINILM, texts), atol=1e-5)

    rows = result_ndjson(http, job["id"])
    assert [r.get("id") for r in rows] == expected_ids
    assert "error" in rows[21] and rows[21]["error"]["code"] == "invalid_input"


def test_txt_file_job_and_file_first_multipart(http):
    texts = ["alpha beta", "gamma", "delta epsilon zeta"]
    response = upload(http, "plain.txt", ("\n".join(texts[:2]) + "\n\n" + texts[2] + "\r\n").encode(),
                      file_first=True)
    assert response.status_code == 200, response.text
    job = submit(http, model=MINILM, input_file_id=response.json()["id"], encoding_format="float")
    done = wait_finished(http, job["id"])
    assert done["request_counts"] == {"total": 3, "completed": 3, "failed": 0}, done
    vectors = np.asarray([d["embedding"] for d in result_json(http, job["id"])["data"]], dtype=np.float32)
    np.testing.assert_allclose(vectors, sync_vectors(http, MINILM, texts), atol=1e-5)


def test_user_data_suffix_purpose_and_owner_checks(http, other_http):
    assert_openai_error(upload(http, "inputs.csv", b"a\nb\n"), 400, "invalid_file_type")
    assert_openai_error(upload(http, "inputs.csv", b"a\nb\n", file_first=True), 400, "invalid_file_type")
    mine = upload(http, "mine.txt", b"one\ntwo\n").json()["id"]
    response = other_http.post(other_http.base + "/v1/jobs", json={"model": MINILM, "input_file_id": mine},
                               timeout=30)
    assert_openai_error(response, 404, "not_found")
    batch_file = upload(http, "b.jsonl", b'{"custom_id": "a"}\n', purpose="batch").json()["id"]
    response = http.post(http.base + "/v1/jobs", json={"model": MINILM, "input_file_id": batch_file}, timeout=30)
    assert response.status_code == 400, response.text
    response = http.post(http.base + "/v1/jobs", json={"model": MINILM, "input_file_id": mine, "input": "x"},
                         timeout=30)
    assert response.status_code == 400, response.text
    response = http.post(http.base + "/v1/embeddings", json={"model": MINILM, "input_file_id": mine}, timeout=30)
    assert response.status_code == 400, response.text
    assert http.delete(f"{http.base}/v1/files/{mine}", timeout=30).json()["deleted"] is True
    response = http.post(http.base + "/v1/jobs", json={"model": MINILM, "input_file_id": mine}, timeout=30)
    assert_openai_error(response, 404, "not_found")


def test_an_upload_of_megabytes_streams_through(http):
    """Bigger than any multipart buffer: ~3 MB of text in one .txt upload, every line an input."""
    lines = [f"line {i} of a file that is several megabytes long" for i in range(60_000)]
    content = ("\n".join(lines) + "\n").encode()
    assert len(content) > 2_000_000
    response = upload(http, "big.txt", content)
    assert response.status_code == 200, response.text[:300]
    record = response.json()
    assert record["bytes"] == len(content)
    stored = http.get(f"{http.base}/v1/files/{record['id']}/content", timeout=60)
    assert stored.status_code == 200 and stored.content == content
