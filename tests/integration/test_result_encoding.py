"""api/bulk/result_formats.py's JSON and ndjson against what json.dumps wrote, and every format in pieces of many rows.

The results are written into a local job store (compacted into Parquet files, or left as per-chunk
parts as a cancelled job leaves them) and streamed by the functions the API route calls, no stack.
The reference below is how the formats were written with json.dumps, one row at a time: the
orjson text must parse to the very same values (float32 widened to the same doubles, floats that
stay floats, -0.0 that stays -0.0), ids and errors included.
"""

from __future__ import annotations

import io
import json

import msgpack
import numpy as np
import pytest

from api.bulk.result_formats import json_list, msgpack_matrix, msgpack_stream, ndjson
from embedserve.jobs import results as result_files
from embedserve.jobs.chunks import ChunkOutput
from embedserve.jobs.data import JobData, job_prefix
from embedserve.jobs.records import Job, JobStatus
from embedserve.jobs.store import open_store
from embedserve.vector_types import row_encoder, vector_type

# Elements whose shortest text differs between repr and orjson (1e-05 / 1e-5), integral floats, signed zero.
AWKWARD = [0.0, -0.0, 1.0, -1.0, 1e-5, 1.234e-5, 3e-8, 0.1, 65504.0, 1e20, -2.5e-40]


def chunk_outputs(n: int, dim: int, per_chunk: int, embedding_type: str = "float", fail=(), ids=True):
    rng = np.random.default_rng(3)
    kind = vector_type(embedding_type)
    chunks = []
    for start in range(0, n, per_chunk):
        items = list(range(start, min(n, start + per_chunk)))
        ok = [i not in fail for i in items]
        if kind.name == "float":
            rows = rng.standard_normal((sum(ok), dim)).astype("<f4")
            rows.flat[:len(AWKWARD)] = np.asarray(AWKWARD, dtype="<f4")[:rows.size]
        else:
            rows = rng.integers(0, 256, (sum(ok), kind.values(dim)), dtype=np.uint8)
        errors = [None if good else {"status": 400, "error": {"message": f"bad \"input\" {i} — é", "param": None,
                                                              "type": "invalid_request_error", "code": "invalid_input"}}
                  for i, good in zip(items, ok)]
        chunks.append(ChunkOutput(items=items, rows=[int(g) for g in ok], tokens=[5 if g else 0 for g in ok], dim=dim,
                                  vectors=rows.tobytes(), errors=errors, embedding_type=kind.name,
                                  ids=[f'id-{i} "ü"' if i % 3 else None for i in items] if ids else None))
    return chunks


def stored_job(tmp_path, outputs, embedding_type="float", encoding_format="float", compacted=True,
               row_group_rows=result_files.ROW_GROUP_ROWS) -> tuple[JobData, Job]:
    data = JobData(open_store(tmp_path.as_uri()))
    total = sum(len(o.items) for o in outputs)
    if compacted:
        result_files.write_result(data.store, job_prefix("job_r"), outputs, embedding_type=embedding_type,
                                  row_group_rows=row_group_rows)
    else:
        for chunk, output in enumerate(outputs):
            data.put_output("job_r", chunk, output)
    job = Job(id="job_r", owner="o", kind="job", model="m-ü", status=JobStatus.COMPLETED, created_at=0, total=total,
              chunks=len(outputs), dim=outputs[0].dim, compacted=int(compacted), embedding_type=embedding_type,
              encoding_format=encoding_format)
    return data, job


def reference_lines(outputs, encoding_format: str, embedding_type: str, listed: bool) -> list[str]:
    """Each row as json.dumps wrote it: the JSON list's entries (`listed`) or ndjson's lines."""
    encode = row_encoder(encoding_format, embedding_type)
    out = []
    for output in outputs:
        width, offset = output.row_width, 0
        for row, (index, error) in enumerate(zip(output.items, output.errors)):
            entry = {"object": "embedding", "index": index} if listed else {"index": index}
            if output.ids and output.ids[row] is not None:
                entry["id"] = output.ids[row]
            if error is None:
                entry["embedding"] = encode(output.vectors[offset:offset + width])
                offset += width
            elif listed:
                entry.update(embedding=None, error=error["error"])
            else:
                entry["error"] = error["error"]
            out.append(json.dumps(entry))
    return out


def canonical(value) -> str:
    """The parsed value written back by json.dumps: equal only for equal values of equal types (-0.0 != 0.0)."""
    return json.dumps(value, sort_keys=True)


CASES = [("float", "float"), ("float", "base64"), ("int8", "float"), ("ubinary", "float"), ("uint8", "base64")]


@pytest.mark.parametrize("compacted", [True, False], ids=["compacted", "parts"])
@pytest.mark.parametrize("embedding_type,encoding_format", CASES)
def test_ndjson_and_json_read_back_as_json_dumps_wrote_them(tmp_path, compacted, embedding_type, encoding_format):
    outputs = chunk_outputs(70, 16, 8, embedding_type, fail={0, 9, 10, 69})
    data, job = stored_job(tmp_path, outputs, embedding_type, encoding_format, compacted, row_group_rows=32)

    lines = b"".join(ndjson(data, job)).decode().split("\n")
    assert lines[-1] == ""  # every line ends with a newline, the last one too
    expected = reference_lines(outputs, encoding_format, embedding_type, listed=False)
    assert [canonical(json.loads(line)) for line in lines[:-1]] == [canonical(json.loads(e)) for e in expected]

    listed = json.loads(b"".join(json_list(data, job)))
    tokens = 5 * 66
    reference = {"object": "list", "model": "m-ü", "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                 "data": [json.loads(e) for e in reference_lines(outputs, encoding_format, embedding_type, True)]}
    assert canonical(listed) == canonical(reference)


def test_a_float_result_keeps_every_float32_exactly(tmp_path):
    outputs = chunk_outputs(40, 32, 40, ids=False)
    data, job = stored_job(tmp_path, outputs)
    got = np.asarray([json.loads(line)["embedding"] for line in b"".join(ndjson(data, job)).splitlines()])
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got.astype(np.float32), np.frombuffer(outputs[0].vectors, "<f4").reshape(40, 32))
    np.testing.assert_array_equal(got, np.frombuffer(outputs[0].vectors, "<f4").reshape(40, 32).astype(np.float64))


@pytest.mark.parametrize("stream", [ndjson, json_list, msgpack_matrix, msgpack_stream])
def test_a_large_result_streams_in_pieces_of_many_rows(tmp_path, stream):
    """20,000 rows in 2 row groups: a piece per ~1 MiB of text or per run of rows, never one per row, nor all at once."""
    outputs = chunk_outputs(20_000, 64, 1000, fail={5, 12_345}, ids=False)
    data, job = stored_job(tmp_path, outputs)
    pieces = list(stream(data, job))
    assert 3 <= len(pieces) <= 200, len(pieces)
    assert max(len(p) for p in pieces) <= 8 * 2**20 + 4096
    if stream is msgpack_stream:
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(b"".join(pieces))
        frames = list(unpacker)
        assert sum(f.get("count", 0) for f in frames[1:-1]) == 20_000


@pytest.mark.parametrize("part_bytes,dim,rows", [("100", 16, 300), ("5000", 16, 300), ("100000", 64, 1200)],
                         ids=["bin8", "bin16", "bin32"])
def test_msgpack_stream_frames_are_packed_as_msgpack_packs_them(tmp_path, monkeypatch, part_bytes, dim, rows):
    """The blocks are written in pieces (header, the matrix's runs, errors and ids): each frame must be the
    bytes msgpack.packb writes for the same map, so any msgpack reader reads it as before."""
    monkeypatch.setenv("EMBED_RESULT_PART_BYTES", part_bytes)
    data, job = stored_job(tmp_path, chunk_outputs(rows, dim, 40, fail={0, 7, 150, 299}))
    content = b"".join(msgpack_stream(data, job))
    frames = list(msgpack.Unpacker(io.BytesIO(content), raw=False))
    assert len(frames) > 3 and any("ids" in f for f in frames[1:-1]) and any(f["errors"] for f in frames[1:-1])
    assert b"".join(msgpack.packb(frame, use_bin_type=True) for frame in frames) == content
