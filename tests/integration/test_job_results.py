"""A job's result in the streamed formats: the framed msgpack stream, msgpack's size limit, Parquet.

The stack tests use an API of their own with a tiny part size and msgpack limit
(EMBED_RESULT_PART_BYTES, EMBED_RESULT_MSGPACK_MAX_BYTES), so a 41-input job comes in many blocks
and is over the limit. The last tests drive api/bulk/result_formats.py over a local job store directly, for
the cases a small stack never reaches (a result compacted into several files).
"""

from __future__ import annotations

import io
import json

import msgpack
import numpy as np
import pyarrow.parquet as pq
import pytest

from api.bulk.result_formats import MSGPACK_STREAM, PARQUET, json_list, msgpack_stream, parquet
from embedserve.jobs import results as result_files
from embedserve.jobs.chunks import ChunkOutput, ChunkSpec
from embedserve.jobs.data import JobData, job_prefix
from embedserve.jobs.records import Job, JobStatus
from embedserve.jobs.store import open_store
from tests.integration.helpers import API_KEY, MINILM, assert_openai_error, session_for
from tests.integration.jobs_helpers import result_json, result_msgpack, submit, upload, wait_finished

PART_BYTES = 4096  # 2 MiniLM rows (384 float32) a block
MSGPACK_MAX_BYTES = 60_000  # 39 MiniLM rows; the 41-input job below is over it


@pytest.fixture(scope="module")
def small_api(stack, workers):
    process, url = stack.start_api(EMBED_API_KEYS=API_KEY, EMBED_RESULT_PART_BYTES=str(PART_BYTES),
                                   EMBED_RESULT_MSGPACK_MAX_BYTES=str(MSGPACK_MAX_BYTES))
    yield url
    process.stop()


@pytest.fixture
def small(small_api):
    with session_for(small_api, API_KEY) as session:
        yield session


@pytest.fixture(scope="module")
def file_job(small_api):
    """A finished 41-input file job: ids on odd lines, line 5 not JSON (fails alone). (id, JSON result)."""
    lines = []
    for i in range(40):
        text = f"streamed result number {i} about {['maps', 'kettles', 'orbits'][i % 3]}"
        lines.append(json.dumps({"text": text, "id": f"doc-{i}"}) if i % 2 else json.dumps(text))
        if i == 4:
            lines.append("{not json")
    with session_for(small_api, API_KEY) as http:
        uploaded = upload(http, "inputs.jsonl", ("\n".join(lines) + "\n").encode())
        assert uploaded.status_code == 200, uploaded.text
        job = submit(http, model=MINILM, input_file_id=uploaded.json()["id"])
        done = wait_finished(http, job["id"])
        assert done["request_counts"] == {"total": 41, "completed": 40, "failed": 1}, done
        return job["id"], result_json(http, job["id"])


def get_result(http, job_id: str, accept: str):
    return http.get(f"{http.base}/v1/jobs/{job_id}/result", headers={"Accept": accept}, timeout=120)


def unpack_stream(content: bytes) -> tuple[dict, list[dict], dict]:
    frames = list(msgpack.Unpacker(io.BytesIO(content), raw=False))
    return frames[0], frames[1:-1], frames[-1]


def stream_matrix(header: dict, blocks: list[dict]) -> tuple[np.ndarray, list, list]:
    """The stream's matrix, errors and ids, checking that blocks cover every row once, in order."""
    assert [b["start"] for b in blocks] == list(np.cumsum([0] + [b["count"] for b in blocks[:-1]]))
    assert sum(b["count"] for b in blocks) == header["total"]
    data = b"".join(b["data"] for b in blocks)
    matrix = np.frombuffer(data, dtype="<f4").reshape(header["total"], header["dim"])
    errors = [e for b in blocks for e in b["errors"]]
    ids = [i for b in blocks for i in (b.get("ids") or [None] * b["count"])]
    return matrix, errors, ids


def assert_matches_json(matrix: np.ndarray, errors: list, ids: list, listed: dict) -> None:
    """Exactly the JSON result's vectors (float32), NaN rows and errors where it failed, and the same ids."""
    data = listed["data"]
    assert len(matrix) == len(data)
    for row, item in zip(matrix, data):
        if item["embedding"] is None:
            assert np.isnan(row).all()
        else:
            np.testing.assert_array_equal(row, np.asarray(item["embedding"], dtype=np.float32))
    assert errors == [{"index": d["index"], "error": d["error"]} for d in data if d["embedding"] is None]
    assert ids == [d.get("id") for d in data]


@pytest.mark.slow
def test_msgpack_stream_comes_in_small_blocks_equal_to_json(small, file_job):
    job_id, listed = file_job
    response = get_result(small, job_id, MSGPACK_STREAM)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"].startswith(MSGPACK_STREAM)
    header, blocks, trailer = unpack_stream(response.content)
    assert header == {"model": MINILM, "dim": 384, "dtype": "<f4", "embedding_type": "float", "total": 41}
    assert len(blocks) == 21 and all(len(b["data"]) <= PART_BYTES for b in blocks)
    matrix, errors, ids = stream_matrix(header, blocks)
    assert_matches_json(matrix, errors, ids, listed)
    assert errors[0]["index"] == 5 and errors[0]["error"]["code"] == "invalid_input"
    assert trailer == {"usage": listed["usage"]}


@pytest.mark.slow
@pytest.mark.parametrize("accept", ["application/msgpack", "application/x-msgpack"])
def test_msgpack_over_the_limit_is_refused_before_any_body(small, file_job, accept):
    job_id, _ = file_job  # 41 x 384 x 4 = 62,976 bytes > 60,000
    response = get_result(small, job_id, accept)
    assert_openai_error(response, 406, "not_acceptable")
    message = response.json()["error"]["message"]
    assert MSGPACK_STREAM in message and "62976" in message, message


@pytest.mark.slow
def test_msgpack_under_the_limit_is_unchanged(small):
    texts = [f"a short job {i}" for i in range(10)]  # 15,360 bytes: fits
    job = submit(small, model=MINILM, input=texts)
    wait_finished(small, job["id"])
    packed = result_msgpack(small, job["id"])
    assert set(packed) == {"model", "shape", "dtype", "embedding_type", "data", "errors", "usage"}
    assert packed["shape"] == [10, 384] and packed["embedding_type"] == "float"
    listed = result_json(small, job["id"])
    matrix = np.frombuffer(packed["data"], dtype="<f4").reshape(10, 384)
    assert_matches_json(matrix, packed["errors"], [None] * 10, listed)


def read_parquet(content: bytes) -> dict:
    return pq.read_table(io.BytesIO(content)).to_pydict()


def assert_parquet_matches_json(table: dict, listed: dict) -> None:
    data = listed["data"]
    assert table["index"] == [d["index"] for d in data]
    assert table["id"] == [d.get("id") for d in data]
    for vector, item in zip(table["embedding"], data):
        if item["embedding"] is None:
            assert vector is None
        else:
            np.testing.assert_array_equal(np.asarray(vector, dtype=np.float32),
                                          np.asarray(item["embedding"], dtype=np.float32))
    errors = [json.loads(e) if e is not None else None for e in table["error"]]
    assert [{k: v for k, v in e.items() if k != "status"} if e else None for e in errors] == \
        [d.get("error") for d in data]
    assert all(e["status"] == 400 for e in errors if e)
    assert sum(table["tokens"]) == listed["usage"]["prompt_tokens"]


@pytest.mark.slow
def test_parquet_by_accept_is_the_stored_file_and_equals_json(small, file_job, stack):
    job_id, listed = file_job
    response = get_result(small, job_id, PARQUET)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"].startswith(PARQUET)
    assert_parquet_matches_json(read_parquet(response.content), listed)
    stored = stack.log_dir / "store" / job_prefix(job_id) / "result" / "part-00000.parquet"
    assert response.content == stored.read_bytes()  # one file: sent as stored


@pytest.mark.slow
def test_a_cancelled_job_streams_every_format_from_its_parts(small):
    texts = [f"cancelled job text {i} on {['ferries', 'ledgers', 'comets'][i % 3]}" for i in range(1500)]
    job = submit(small, model=MINILM, input=texts)
    response = small.post(f"{small.base}/v1/jobs/{job['id']}/cancel", timeout=30)
    assert response.status_code == 200, response.text
    done = wait_finished(small, job["id"])
    assert done["status"] == "cancelled", done
    listed = result_json(small, job["id"])
    assert any(d["embedding"] is None and d["error"]["code"] == "cancelled" for d in listed["data"])

    table = read_parquet(get_result(small, job["id"], PARQUET).content)
    assert_parquet_matches_json(table, listed)
    header, blocks, trailer = unpack_stream(get_result(small, job["id"], MSGPACK_STREAM).content)
    matrix, errors, ids = stream_matrix(header, blocks)
    assert_matches_json(matrix, errors, ids, listed)
    assert trailer == {"usage": listed["usage"]}


# --- api/bulk/result_formats.py over a local job store, no stack -----------------------------------------------------------


def outputs(n: int, dim: int, per_chunk: int, fail: set[int]) -> list[ChunkOutput]:
    rng = np.random.default_rng(7)
    chunks = []
    for start in range(0, n, per_chunk):
        items = list(range(start, min(n, start + per_chunk)))
        ok = [i not in fail for i in items]
        vectors = rng.standard_normal((sum(ok), dim)).astype("<f4").tobytes()
        errors = [None if good else {"status": 400, "error": {"message": f"bad {i}", "type": "invalid_request_error",
                                                              "param": None, "code": "invalid_input"}}
                  for i, good in zip(items, ok)]
        chunks.append(ChunkOutput(items=items, rows=[int(g) for g in ok], tokens=[3 if g else 0 for g in ok], dim=dim,
                                  vectors=vectors, errors=errors, ids=[f"id-{i}" if i % 3 else None for i in items]))
    return chunks


def job_of(job_id: str, n: int, chunks: int, dim: int, status=JobStatus.COMPLETED, compacted=1) -> Job:
    return Job(id=job_id, owner="o", kind="job", model="m", status=status, created_at=0, total=n, chunks=chunks,
               dim=dim, compacted=compacted)


def test_a_result_compacted_into_several_files_comes_as_one_parquet_stream(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBED_RESULT_PART_BYTES", "1000")
    data = JobData(open_store(tmp_path.as_uri()))
    parts = outputs(50, 8, 6, fail={3, 17, 49})
    manifest = result_files.write_result(data.store, job_prefix("job_a"), parts, rows_per_file=12, row_group_rows=5)
    assert len(manifest["files"]) == 5
    job = job_of("job_a", 50, len(parts), 8)
    listed = json.loads(b"".join(json_list(data, job)))

    content = b"".join(parquet(data, job))
    # The files' row groups (5, 5 and 2 rows a file), kept as they are.
    assert pq.ParquetFile(io.BytesIO(content)).metadata.num_row_groups == 13
    assert_parquet_matches_json(read_parquet(content), listed)

    header, blocks, trailer = unpack_stream(b"".join(msgpack_stream(data, job)))
    assert len(blocks) >= 2 and all(len(b["data"]) <= 1000 for b in blocks)
    assert_matches_json(*stream_matrix(header, blocks), listed)


def test_a_job_stopped_before_its_first_chunk_ran(tmp_path):
    """Every chunk unrun: no dimension known, Parquet with a null embedding column, a stream of errors."""
    data = JobData(open_store(tmp_path.as_uri()))
    data.put_inputs("job_b", [ChunkSpec(model="m", items=[0, 1], counts=[1, 1], inputs=["a", "b"]),
                              ChunkSpec(model="m", items=[2], counts=[1], inputs=["c"])])
    job = job_of("job_b", 3, 2, 0, status=JobStatus.CANCELLED, compacted=0)
    listed = json.loads(b"".join(json_list(data, job)))
    assert [d["error"]["code"] for d in listed["data"]] == ["cancelled"] * 3
    assert_parquet_matches_json(read_parquet(b"".join(parquet(data, job))), listed)
    header, blocks, trailer = unpack_stream(b"".join(msgpack_stream(data, job)))
    assert header["dim"] == 0 and trailer == {"usage": {"prompt_tokens": 0, "total_tokens": 0}}
    assert_matches_json(*stream_matrix(header, blocks), listed)
