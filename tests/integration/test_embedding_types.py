"""`embedding_type`: int8, uint8, binary, ubinary vectors on the real stack, sync, jobs and batches.

Each type is checked against its definition computed here from the float vectors: the bit types
against numpy.packbits, the scalar types against sentence-transformers' formula with the ranges
the model's catalogue entry holds in Redis.
"""

from __future__ import annotations

import base64
import io
import json

import msgpack
import numpy as np
import openai
import pyarrow.parquet as pq
import pytest
import redis

from embedserve import redis_keys
from embedserve.jobs.data import job_prefix
from tests.integration.helpers import (
    API_KEY,
    MINILM,
    QWEN,
    assert_openai_error,
    embed,
    jsonl,
    request_line,
    upload,
    wait_batch,
)
from tests.integration.jobs_helpers import result_json, result_msgpack, result_ndjson, submit, texts, wait_finished

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

TEXTS = ["The cat sat on the mat.", "Quantized vectors make a smaller index.", "hello",
         "A longer sentence about rivers, mountains and the weather in the north of Norway in winter."]
NUMPY = {"int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}


def vectors(http, embedding_type: str, inputs=TEXTS, model=MINILM, **body) -> np.ndarray:
    response = embed(http, model=model, input=inputs, embedding_type=embedding_type, **body)
    assert response.status_code == 200, response.text[:500]
    rows = [item["embedding"] for item in response.json()["data"]]
    return np.asarray(rows, dtype=np.float32 if embedding_type == "float" else NUMPY[embedding_type])


def stored_ranges(redis_server, model: str, width: int) -> np.ndarray:
    """The int8 calibration ranges of `model` at `width`, as the catalogue entry keeps them."""
    client = redis.Redis.from_url(redis_server.url)
    fields = {k.decode(): v for k, v in client.hgetall(redis_keys.quant_ranges(model)).items()}
    [raw] = [v for k, v in fields.items() if k.endswith(f":{width}")]
    return np.frombuffer(raw, dtype="<f4").reshape(2, width)


def st_scalar(floats: np.ndarray, ranges: np.ndarray, embedding_type: str) -> np.ndarray:
    """sentence-transformers' quantize_embeddings for int8/uint8, given the ranges."""
    starts, steps = ranges[0], (ranges[1] - ranges[0]) / np.float32(255)
    buckets = np.clip(np.floor((floats - starts) / np.where(steps == 0, 1, steps)), 0, 255)
    return buckets.astype(np.uint8) if embedding_type == "uint8" else (buckets - 128).astype(np.int8)


def packbits(floats: np.ndarray, embedding_type: str) -> np.ndarray:
    packed = np.packbits(floats > 0, axis=-1)
    return packed if embedding_type == "ubinary" else (packed.astype(np.int16) - 128).astype(np.int8)


@pytest.mark.parametrize("dimensions", [None, 48])
@pytest.mark.parametrize("model", [MINILM, QWEN])
def test_each_type_is_its_definition_of_the_float_vectors(http, redis_server, model, dimensions):
    extra = {"dimensions": dimensions} if dimensions else {}
    floats = vectors(http, "float", model=model, **extra)
    width = floats.shape[1]
    for kind in ("binary", "ubinary"):
        got = vectors(http, kind, model=model, **extra)
        assert got.shape == (len(TEXTS), width // 8)
        np.testing.assert_array_equal(got, packbits(floats, kind))
    for kind in ("int8", "uint8"):
        got = vectors(http, kind, model=model, **extra)
        assert got.shape == (len(TEXTS), width)
        np.testing.assert_array_equal(got, st_scalar(floats, stored_ranges(redis_server, model, width), kind))
        assert len(np.unique(got)) > 30  # the ranges spread the values over the buckets


def test_base64_carries_the_raw_bytes(http):
    for kind, dtype in NUMPY.items():
        listed = vectors(http, kind)
        response = embed(http, model=MINILM, input=TEXTS, embedding_type=kind, encoding_format="base64")
        assert response.status_code == 200, response.text[:300]
        rows = [np.frombuffer(base64.b64decode(d["embedding"]), dtype=dtype) for d in response.json()["data"]]
        np.testing.assert_array_equal(np.stack(rows), listed)
    size = len(base64.b64decode(embed(http, model=MINILM, input="x", embedding_type="ubinary",
                                      encoding_format="base64").json()["data"][0]["embedding"]))
    assert size == 384 // 8  # 48 bytes instead of 1,536


def test_int8_does_not_depend_on_the_batch_a_text_ran_in(http):
    alone = np.stack([vectors(http, "int8", [text])[0] for text in TEXTS])
    together = vectors(http, "int8", TEXTS)
    assert together.shape == (len(TEXTS), 384) and len(np.unique(together)) > 30  # real int8 buckets
    mixed = vectors(http, "int8", TEXTS[::-1] + texts(20, "filler "))[:len(TEXTS)][::-1]
    for other in (together, mixed):
        # The ranges are fixed; a float landing within ~1e-7 of a bucket edge (padding changes the
        # sums' order) may move one bucket, never more.
        diff = np.abs(alone.astype(np.int16) - other.astype(np.int16))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_the_openai_client_gets_ubinary_with_float_encoding(api_url, http):
    with openai.OpenAI(base_url=api_url + "/v1", api_key=API_KEY, max_retries=0) as client:
        result = client.embeddings.create(model=MINILM, input=TEXTS, encoding_format="float",
                                          extra_body={"embedding_type": "ubinary"})
    got = np.asarray([d.embedding for d in result.data], dtype=np.uint8)
    assert got.shape == (len(TEXTS), 48)
    np.testing.assert_array_equal(got, packbits(vectors(http, "float"), "ubinary"))


@pytest.mark.parametrize("value", ["int4", "", 8, None, ["int8"]])
def test_a_bad_embedding_type_is_a_400_naming_it(http, value):
    response = embed(http, model=MINILM, input="x", embedding_type=value)
    assert_openai_error(response, 400, param="embedding_type")


@pytest.mark.parametrize("kind", ["ubinary", "int8"])
def test_a_job_keeps_and_returns_the_small_form_in_every_format(http, stack, kind):
    inputs = texts(12, f"job {kind} ")
    job = submit(http, model=MINILM, input=inputs, embedding_type=kind, dimensions=256)
    done = wait_finished(http, job["id"])
    assert done["status"] == "completed" and done["embedding_type"] == kind, done
    expected = vectors(http, kind, inputs, dimensions=256)
    values = 32 if kind == "ubinary" else 256
    dtype = NUMPY[kind]

    listed = np.asarray([d["embedding"] for d in result_json(http, job["id"])["data"]], dtype=dtype)
    assert_close(listed, expected, kind)
    lines = np.asarray([line["embedding"] for line in result_ndjson(http, job["id"])], dtype=dtype)
    np.testing.assert_array_equal(lines, listed)

    packed = result_msgpack(http, job["id"])
    assert packed["dtype"] == ("|u1" if kind == "ubinary" else "|i1") and packed["shape"] == [12, values]
    assert packed["embedding_type"] == kind
    np.testing.assert_array_equal(np.frombuffer(packed["data"], dtype=dtype).reshape(12, values), listed)

    stream = http.get(f"{http.base}/v1/jobs/{job['id']}/result",
                      headers={"Accept": "application/vnd.embedserve.msgpack-stream"}, timeout=60)
    frames = list(msgpack.Unpacker(io.BytesIO(stream.content), raw=False))
    assert frames[0]["dtype"] == packed["dtype"] and frames[0]["dim"] == 256
    data = b"".join(frame["data"] for frame in frames[1:-1])
    np.testing.assert_array_equal(np.frombuffer(data, dtype=dtype).reshape(12, values), listed)

    parquet = http.get(f"{http.base}/v1/jobs/{job['id']}/result",
                       headers={"Accept": "application/vnd.apache.parquet"}, timeout=60)
    table = pq.read_table(io.BytesIO(parquet.content))
    column = table.schema.field("embedding").type
    assert column.list_size == values and str(column.value_type) == ("uint8" if kind == "ubinary" else "int8")
    np.testing.assert_array_equal(np.asarray(table.column("embedding").to_pylist(), dtype=dtype), listed)
    # The job store holds the small form: the stored file is what was sent.
    stored = stack.log_dir / "store" / job_prefix(job["id"]) / "result" / "part-00000.parquet"
    assert stored.read_bytes() == parquet.content


def assert_close(got: np.ndarray, expected: np.ndarray, kind: str) -> None:
    """A job's vectors against a sync request's: its chunks ran in other batches, so a value within
    ~1e-7 of a bucket edge (or of 0, for a sign bit) may differ; nothing else may."""
    if kind in ("binary", "ubinary"):  # compare bits: one flipped bit moves a byte by up to 128
        got, expected = (np.unpackbits((v.astype(np.int16) + (128 if kind == "binary" else 0)).astype(np.uint8),
                                       axis=-1) for v in (got, expected))
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_batch_output_lines_carry_the_asked_type(api_url, http):
    lines = [request_line(f"line-{kind}", {"model": MINILM, "input": TEXTS, "embedding_type": kind,
                                           "encoding_format": "float"}) for kind in ("float", "binary", "uint8")]
    with openai.OpenAI(base_url=api_url + "/v1", api_key=API_KEY, max_retries=0) as client:
        batch = client.batches.create(input_file_id=upload(client, jsonl(lines)).id, endpoint="/v1/embeddings",
                                      completion_window="24h")
        done = wait_batch(client, batch.id)
        assert done.status == "completed" and done.request_counts.completed == 3, done
        output = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    bodies = {line["custom_id"]: line["response"]["body"] for line in output}
    floats = np.asarray([d["embedding"] for d in bodies["line-float"]["data"]], dtype=np.float32)
    binary = np.asarray([d["embedding"] for d in bodies["line-binary"]["data"]], dtype=np.int8)
    assert_close(binary, packbits(floats, "binary"), "binary")
    uint8 = np.asarray([d["embedding"] for d in bodies["line-uint8"]["data"]], dtype=np.uint8)
    assert_close(uint8, vectors(http, "uint8"), "uint8")


def test_ubinary_is_the_same_bits_through_openai_cohere_and_a_job(api_url, http):
    """The issue's 'done when': one user, three clients, the same bits."""
    import cohere
    import httpx

    inputs = ["Binary vectors are 32 times smaller.", "The same bits, whichever way you ask.", "A third text."]
    with openai.OpenAI(base_url=api_url + "/v1", api_key=API_KEY, max_retries=0) as client:
        result = client.embeddings.create(model=MINILM, input=inputs, encoding_format="float",
                                          extra_body={"embedding_type": "ubinary"})
    by_openai = np.asarray([d.embedding for d in result.data], dtype=np.uint8)
    with httpx.Client(timeout=120) as transport:
        co = cohere.ClientV2(api_key=API_KEY, base_url=api_url, httpx_client=transport, max_retries=0)
        by_cohere = np.asarray(co.embed(texts=inputs, model=MINILM, input_type="search_document",
                                        embedding_types=["ubinary"]).embeddings.ubinary, dtype=np.uint8)
    job = submit(http, model=MINILM, input=inputs, embedding_type="ubinary")
    assert wait_finished(http, job["id"])["status"] == "completed"
    by_job = np.asarray([d["embedding"] for d in result_json(http, job["id"])["data"]], dtype=np.uint8)
    assert by_openai.shape == (3, 48)
    np.testing.assert_array_equal(by_cohere, by_openai)
    np.testing.assert_array_equal(by_job, by_openai)
