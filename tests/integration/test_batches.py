"""OpenAI Files + Batches with the official client, unchanged, against the real stack."""

from __future__ import annotations

import json

import numpy as np
import openai
import pytest

from embedserve import redis_keys
from tests.integration.helpers import MINILM, QWEN, assert_openai_error, jsonl, request_line, upload, wait_batch
from tests.integration.jobs_helpers import sync_vectors, texts

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

def test_batch_with_a_failing_line(client, http):
    inputs = {f"req-{i}": texts(3, f"batch {i} ") for i in range(40)}
    lines = [request_line(cid, {"model": MINILM, "input": value}) for cid, value in inputs.items()]
    lines.insert(7, request_line("bad-model", {"model": "no-such-model", "input": "hello"}))
    lines.append(request_line("single", {"model": MINILM, "input": "one string", "encoding_format": "base64"}))
    uploaded = upload(client, jsonl(lines))
    assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(lines)) and uploaded.id.startswith("file-")
    assert client.files.retrieve(uploaded.id).filename == "batch.jsonl"
    assert client.files.content(uploaded.id).content == jsonl(lines)

    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h",
                                  metadata={"purpose": "test"})
    assert batch.status in ("validating", "in_progress", "completed") and batch.metadata == {"purpose": "test"}
    assert batch.id.startswith("batch_") and batch.input_file_id == uploaded.id
    done = wait_batch(client, batch.id)
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (42, 41, 1)
    assert done.completed_at and done.output_file_id and done.error_file_id

    output = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    by_id = {line["custom_id"]: line for line in output}
    assert len(output) == 41 and set(by_id) == set(inputs) | {"single"}
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
    body = by_id["req-5"]["response"]["body"]
    assert body["object"] == "list" and body["model"] == MINILM and body["usage"]["prompt_tokens"] > 0
    got = np.asarray([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert np.allclose(got, sync_vectors(http, MINILM, inputs["req-5"]), atol=1e-5)
    assert isinstance(by_id["single"]["response"]["body"]["data"][0]["embedding"], str)  # base64 as asked

    errors = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
    assert len(errors) == 1 and errors[0]["custom_id"] == "bad-model"
    assert errors[0]["response"]["status_code"] == 404
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"

    out_file = client.files.retrieve(done.output_file_id)
    assert out_file.purpose == "batch_output"
    assert out_file.bytes == len(client.files.content(done.output_file_id).content)
    assert batch.id in [b.id for b in client.batches.list(limit=100).data]
    assert uploaded.id in [f.id for f in client.files.list().data]


def test_reading_a_finished_batch_and_its_files_writes_nothing(client, redis_server):
    """The output file records are made with the batch and their size is counted where it is read:
    retrieving or listing a batch or a file leaves Redis as it was (the review found GETs that wrote)."""
    lines = [request_line(f"r{i}", {"model": MINILM, "input": f"read-only {i}"}) for i in range(3)]
    lines.append(request_line("bad", {"model": "no-such-model", "input": "x"}))
    done = wait_batch(client, client.batches.create(input_file_id=upload(client, jsonl(lines)).id,
                                                    endpoint="/v1/embeddings", completion_window="24h").id)
    assert done.output_file_id and done.error_file_id, done
    redis = redis_server.client()
    keys = [redis_keys.batch(done.id), redis_keys.file(done.output_file_id), redis_keys.file(done.error_file_id)]

    def snapshot():
        return [redis.hgetall(key) for key in keys]
    before = snapshot()
    assert all(before), before
    client.batches.retrieve(done.id)
    client.batches.list(limit=100)
    out_file, err_file = client.files.retrieve(done.output_file_id), client.files.retrieve(done.error_file_id)
    listed = {f.id: f for f in client.files.list().data}
    assert snapshot() == before
    content = client.files.content(done.output_file_id).content
    assert out_file.bytes == len(content) == listed[done.output_file_id].bytes and content.count(b"\n") == 3
    assert err_file.bytes == len(client.files.content(done.error_file_id).content) > 0
    assert out_file.created_at >= done.created_at


def test_a_batch_uses_one_model_and_lines_for_another_fail_alone(client, workers):
    """OpenAI's rule: one model per batch. The first valid line's model is the batch's."""
    lines = [request_line("first", {"model": MINILM, "input": "one"}),
             request_line("other", {"model": QWEN, "input": "two"}),
             request_line("third", {"model": MINILM, "input": "three"})]
    batch = client.batches.create(input_file_id=upload(client, jsonl(lines)).id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    done = wait_batch(client, batch.id)
    assert done.status == "completed" and done.model == MINILM, done
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 1)
    errors = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
    assert [e["custom_id"] for e in errors] == ["other"]
    assert errors[0]["response"]["body"]["error"]["code"] == "mismatched_model"


def test_a_line_without_a_model_fails_alone_while_several_are_served(client, workers):
    """A line may leave `model` out only when one embedding model is served; here two are, so it fails
    alone, with the code the sync route gives (model_required)."""
    lines = [request_line("named", {"model": MINILM, "input": "one"}), request_line("unnamed", {"input": "two"})]
    batch = client.batches.create(input_file_id=upload(client, jsonl(lines)).id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    done = wait_batch(client, batch.id)
    assert done.status == "completed" and (done.request_counts.completed, done.request_counts.failed) == (1, 1), done
    errors = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
    assert [e["custom_id"] for e in errors] == ["unnamed"] and errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["code"] == "model_required"


def test_malformed_file_fails_the_batch_at_validation_naming_the_line(client):
    lines = [jsonl([request_line("a", {"model": MINILM, "input": "x"})]),
             b'{"method": "POST", "url": "/v1/embeddings", "body": {"input": "no custom id"}}\n']
    uploaded = upload(client, b"".join(lines))
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    assert batch.status == "failed" and batch.failed_at
    assert batch.errors.data[0].line == 2 and "custom_id" in batch.errors.data[0].message
    assert batch.output_file_id is None


@pytest.mark.parametrize("line,needle", [
    ({"custom_id": "a", "method": "GET", "url": "/v1/embeddings", "body": {"input": "x"}}, "method"),
    ({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"input": "x"}}, "url"),
    ({"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": "x"}, "body"),
])
def test_bad_request_lines_fail_validation(client, line, needle):
    uploaded = upload(client, jsonl([line]))
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    assert batch.status == "failed" and batch.errors.data[0].line == 1
    assert needle in batch.errors.data[0].message


def test_duplicate_custom_id_fails_validation(client):
    uploaded = upload(client, jsonl([request_line("same", {"model": MINILM, "input": "x"})] * 2))
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    assert batch.status == "failed" and batch.errors.data[0].code == "duplicate_custom_id"


def test_cancel(client):
    lines = [request_line(f"c-{i}", {"model": MINILM, "input": texts(40, f"cancel {i} ")}) for i in range(100)]
    batch = client.batches.create(input_file_id=upload(client, jsonl(lines)).id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = wait_batch(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at
    assert done.request_counts.completed < 100 and done.error_file_id
    errors = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
    assert errors and all(e["error"]["code"] == "batch_cancelled" and e["response"] is None for e in errors)
    assert len(errors) == 100 - done.request_counts.completed


@pytest.mark.parametrize("content,code", [
    (b"", "empty_file"),
    (b"\n\n", "empty_file"),
    (b"this is not json\n", "invalid_jsonl"),
    (b'{"a": 1}\n[1, 2]\n', "invalid_jsonl"),
    (b"\xff\xfe\x00garbage", "invalid_jsonl"),
])
def test_bad_uploads_are_400_and_store_nothing(http, content, code):
    before = http.get(http.base + "/v1/files", timeout=30).json()["data"]
    response = http.post(http.base + "/v1/files", files={"file": ("x.jsonl", content)}, data={"purpose": "batch"},
                         timeout=30)
    assert_openai_error(response, 400, code, "file")
    assert http.get(http.base + "/v1/files", timeout=30).json()["data"] == before


@pytest.mark.parametrize("data,files,param", [
    ({"purpose": "fine-tune"}, {"file": ("x.jsonl", b'{"a": 1}\n')}, "purpose"),
    ({}, {"file": ("x.jsonl", b'{"a": 1}\n')}, "purpose"),
    ({"purpose": "batch"}, None, "file"),
])
def test_bad_upload_fields(http, data, files, param):
    response = http.post(http.base + "/v1/files", files=files or {"other": ("y", b"z")}, data=data, timeout=30)
    assert_openai_error(response, 400, None, param)


@pytest.mark.parametrize("body,param", [
    ({"endpoint": "/v1/embeddings", "completion_window": "24h"}, "input_file_id"),
    ({"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h"}, "endpoint"),
    ({"input_file_id": "file-x", "endpoint": "/v1/embeddings", "completion_window": "1h"}, "completion_window"),
    ({"input_file_id": "file-x", "endpoint": "/v1/embeddings", "completion_window": "24h", "metadata": [1]},
     "metadata"),
])
def test_bad_batch_bodies(http, body, param):
    assert_openai_error(http.post(http.base + "/v1/batches", json=body, timeout=30), 400, None, param)


def test_batch_on_unknown_file_is_404(http):
    body = {"input_file_id": "file-" + "0" * 32, "endpoint": "/v1/embeddings", "completion_window": "24h"}
    assert_openai_error(http.post(http.base + "/v1/batches", json=body, timeout=30), 404, "not_found")


def test_another_key_gets_404_for_files_and_batches(client, api_url, other_http):
    uploaded = upload(client, jsonl([request_line("own", {"model": MINILM, "input": "x"})]))
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    other = other_http
    base = api_url + "/v1"
    for method, path in [("get", f"/files/{uploaded.id}"), ("get", f"/files/{uploaded.id}/content"),
                         ("delete", f"/files/{uploaded.id}"), ("get", f"/batches/{batch.id}"),
                         ("post", f"/batches/{batch.id}/cancel")]:
        assert_openai_error(getattr(other, method)(base + path, timeout=30), 404, "not_found")
        unknown = path.replace(uploaded.id, "file-" + "0" * 32).replace(batch.id, "batch_" + "0" * 32)
        assert_openai_error(getattr(other, method)(base + unknown, timeout=30), 404, "not_found")
    body = {"input_file_id": uploaded.id, "endpoint": "/v1/embeddings", "completion_window": "24h"}
    assert_openai_error(other.post(base + "/batches", json=body, timeout=30), 404, "not_found")
    assert uploaded.id not in [f["id"] for f in other.get(base + "/files", timeout=30).json()["data"]]
    assert batch.id not in [b["id"] for b in other.get(base + "/batches?limit=100", timeout=30).json()["data"]]
    assert wait_batch(client, batch.id).status == "completed"  # their cancel did nothing
    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
