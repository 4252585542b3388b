"""A job's result as Parquet in the job store: written in parts, read back bit for bit, on both stores."""

from __future__ import annotations

import json
import os
import random
import struct

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from embedserve.jobs.chunks import ChunkOutput
from embedserve.jobs.results import MANIFEST, iter_result_batches, read_manifest, to_chunk_output, write_result
from embedserve.jobs.store import open_store

DIM = 8


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, monkeypatch):
    if request.param == "local":
        return open_store((tmp_path / "store").as_uri())
    server = request.getfixturevalue("s3_server")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    return open_store(server.url())


def error(status: int, message: str) -> dict:
    return {"status": status, "error": {"message": message, "type": "invalid_request_error", "param": "input",
                                        "code": "context_length_exceeded"}}


def make_outputs(total: int, chunk: int, dim: int = DIM, seed: int = 1) -> list[ChunkOutput]:
    """Chunks of a native job: random vectors, every 7th input failed, ids on every other chunk."""
    rng = random.Random(seed)
    outputs = []
    for start in range(0, total, chunk):
        items = list(range(start, min(total, start + chunk)))
        failed = [i % 7 == 3 for i in items]
        vectors = b"".join(struct.pack(f"<{dim}f", *(rng.uniform(-1, 1) for _ in range(dim)))
                           for bad in failed if not bad)
        with_ids = (start // chunk) % 2 == 0
        outputs.append(ChunkOutput(
            items=items, rows=[0 if bad else 1 for bad in failed],
            tokens=[0 if bad else 3 + i % 5 for i, bad in zip(items, failed)], dim=dim, vectors=vectors,
            errors=[error(400, f"input {i} is too long") if bad else None for i, bad in zip(items, failed)],
            ids=[f"doc-{i}" if i % 3 else None for i in items] if with_ids else None))
    return outputs


def per_item(outputs) -> dict[int, tuple]:
    """index -> (vector bytes or None, tokens, error, id): what a result must preserve."""
    found = {}
    for out in outputs:
        offset, width = 0, out.dim * 4
        for n, index in enumerate(out.items):
            vector = None
            if out.rows[n]:
                vector = out.vectors[offset:offset + width]
                offset += width
            found[index] = (vector, out.tokens[n], out.errors[n], out.ids[n] if out.ids else None)
    return found


def test_write_and_read_back(store):
    outputs = make_outputs(1000, 64)
    manifest = write_result(store, "jobs/j1/", outputs, rows_per_file=300, row_group_rows=100)

    assert manifest == read_manifest(store, "jobs/j1/")
    assert manifest["rows"] == 1000 and manifest["dim"] == DIM and manifest["format"] == "parquet"
    assert [f["rows"] for f in manifest["files"]] == [300, 300, 300, 100]
    assert store.list("jobs/j1/result/") == sorted(["jobs/j1/" + f["path"] for f in manifest["files"]] +
                                                   ["jobs/j1/" + MANIFEST])
    with store.open("jobs/j1/result/part-00000.parquet") as source:
        meta = pq.ParquetFile(source).metadata
        assert meta.num_row_groups == 3 and meta.num_rows == 300

    # Every input once, in order, each value as written.
    tables = []
    for entry in manifest["files"]:
        with store.open("jobs/j1/" + entry["path"]) as source:
            tables.append(pq.read_table(source))
    table = pa.concat_tables(tables)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    assert table.column("index").to_pylist() == list(range(1000))
    expected = per_item(outputs)
    for row in table.to_pylist():
        vector, tokens, err, item_id = expected[row["index"]]
        if vector is None:
            assert row["embedding"] is None
            assert json.loads(row["error"]) == {**err["error"], "status": err["status"]}
        else:
            assert struct.pack(f"<{DIM}f", *row["embedding"]) == vector  # bit for bit
            assert row["error"] is None
        assert (row["tokens"], row["id"]) == (tokens, item_id)


def test_batches_round_trip_to_chunk_outputs(store):
    outputs = make_outputs(500, 50, seed=2)
    write_result(store, "jobs/j2/", outputs, rows_per_file=220, row_group_rows=64)
    batches = list(iter_result_batches(store, "jobs/j2/"))
    assert max(b.num_rows for b in batches) == 64 and sum(b.num_rows for b in batches) == 500
    back = [to_chunk_output(b) for b in batches]
    assert all(out.dim == DIM for out in back)
    assert per_item(back) == per_item(outputs)
    # A sliced batch (non-zero offsets into its buffers) converts just as well.
    part = to_chunk_output(batches[1].slice(5, 20))
    assert part.items == list(range(69, 89))
    assert per_item([part]) == {i: v for i, v in per_item(outputs).items() if 69 <= i < 89}
    whole = to_chunk_output(batches[1].slice(10, 6))  # inputs 74..79: none failed, so no copy is made
    assert whole.rows == [1] * 6 and per_item([whole]) == {i: per_item(outputs)[i] for i in range(74, 80)}
    # A batch with no id anywhere reads back as ids=None, like a ChunkOutput without ids.
    plain = make_outputs(10, 10, seed=3)[0]
    plain.ids = None
    write_result(store, "jobs/j3/", [plain])
    (batch,) = iter_result_batches(store, "jobs/j3/")
    assert to_chunk_output(batch) == plain


def test_read_as_a_dataset(tmp_path):
    """A file:// store's result directory is what pandas / pyarrow.dataset / DuckDB read."""
    store = open_store(tmp_path.as_uri())
    outputs = make_outputs(300, 40, seed=4)
    write_result(store, "jobs/j4/", outputs, rows_per_file=128, row_group_rows=32)
    table = ds.dataset(tmp_path / "jobs" / "j4" / "result", format="parquet").to_table().sort_by("index")
    assert table.column("index").to_pylist() == list(range(300))
    assert table.column("embedding").null_count == sum(1 for i in range(300) if i % 7 == 3)


def test_all_failed_and_empty_results(store):
    failed = ChunkOutput(items=[0, 1], rows=[0, 0], tokens=[0, 0], dim=0, vectors=b"",
                         errors=[error(400, "a"), error(422, "b")], ids=["x", None])
    manifest = write_result(store, "jobs/f/", [failed])
    assert manifest["dim"] == 0 and manifest["rows"] == 2
    (batch,) = iter_result_batches(store, "jobs/f/")
    assert batch.schema.field("embedding").type == pa.list_(pa.float32())
    assert to_chunk_output(batch) == failed

    manifest = write_result(store, "jobs/e/", [], dim=DIM)
    assert manifest["rows"] == 0 and [f["rows"] for f in manifest["files"]] == [0]
    assert list(iter_result_batches(store, "jobs/e/")) == []
    with store.open("jobs/e/result/part-00000.parquet") as source:
        assert pq.read_table(source).schema.field("embedding").type == pa.list_(pa.float32(), DIM)


def test_dim_found_after_failed_chunks(store):
    """Chunks whose inputs all failed (dim 0) before the first vectors: the result still has dim 8."""
    lead = ChunkOutput(items=[0], rows=[0], tokens=[0], dim=0, vectors=b"", errors=[error(400, "x")])
    rest = make_outputs(20, 10)
    for out in rest:
        out.items = [i + 1 for i in out.items]
    manifest = write_result(store, "jobs/d/", [lead, *rest])
    assert manifest["dim"] == DIM
    back = [to_chunk_output(b) for b in iter_result_batches(store, "jobs/d/")]
    assert per_item(back) == per_item([lead, *rest])


def test_manifest_is_written_last_and_a_rewrite_replaces(store):
    class Failing:
        def __iter__(self):
            yield from make_outputs(100, 10)
            raise RuntimeError("chunk lost")

    with pytest.raises(RuntimeError):
        write_result(store, "jobs/m/", Failing(), rows_per_file=30, row_group_rows=10)
    assert read_manifest(store, "jobs/m/") is None  # files may be there, but no manifest vouches for them

    write_result(store, "jobs/m/", make_outputs(100, 10), rows_per_file=30)
    write_result(store, "jobs/m/", make_outputs(50, 10), rows_per_file=30)
    manifest = read_manifest(store, "jobs/m/")
    assert manifest["rows"] == 50
    assert store.list("jobs/m/result/part-") == ["jobs/m/result/part-00000.parquet",
                                                 "jobs/m/result/part-00001.parquet"]
    with pytest.raises(KeyError):
        list(iter_result_batches(store, "jobs/none/"))


def test_inconsistent_outputs_are_refused(store):
    bad_rows = ChunkOutput(items=[0], rows=[2], tokens=[1], dim=2, vectors=os.urandom(16), errors=[None])
    with pytest.raises(ValueError, match="one vector per input"):
        write_result(store, "jobs/x/", [bad_rows])
    short = ChunkOutput(items=[0, 1], rows=[1, 1], tokens=[1, 1], dim=2, vectors=os.urandom(8),
                        errors=[None, None])
    with pytest.raises(ValueError, match="vector bytes"):
        write_result(store, "jobs/x/", [short])
    assert read_manifest(store, "jobs/x/") is None


def with_windows(outputs: list[ChunkOutput], seed: int = 2) -> list[ChunkOutput]:
    """The outputs as a `long_input: windows` job's: each succeeded row with 1 to 3 random windows."""
    rng = random.Random(seed)
    for out in outputs:
        out.windows = [[{"text_start": 10 * k, "text_end": 10 * k + 15, "tokens": 5 + k,
                         "embedding": struct.pack(f"<{out.dim}f", *(rng.uniform(-1, 1) for _ in range(out.dim)))}
                        for k in range(rng.randint(1, 3))] for _ in range(out.errors.count(None))]
    return outputs


def test_windows_column_round_trips(store):
    outputs = with_windows(make_outputs(40, 9))
    manifest = write_result(store, "jobs/w/", outputs, row_group_rows=16, windows=True)
    assert "windows" in manifest["columns"]
    back = [to_chunk_output(batch) for batch in iter_result_batches(store, "jobs/w/")]
    assert [w for out in back for w in out.windows] == [w for out in outputs for w in out.windows]
    assert per_item(back) == per_item(outputs)
    plain = write_result(store, "jobs/p/", make_outputs(10, 4))
    assert "windows" not in plain["columns"]
    assert all(to_chunk_output(batch).windows is None for batch in iter_result_batches(store, "jobs/p/"))


def test_a_windows_result_takes_rows_from_a_worker_without_windows(store):
    # A worker from before long inputs (a rolling upgrade) answers a windows job without windows: its
    # rows get empty lists; the result is still written (it raised StopIteration: a 500 at compaction).
    outputs = with_windows(make_outputs(12, 4))
    outputs.append(make_outputs(6, 4)[0])  # no windows at all
    manifest = write_result(store, "jobs/old/", outputs, row_group_rows=8, windows=True)
    assert "windows" in manifest["columns"]
    back = [to_chunk_output(batch) for batch in iter_result_batches(store, "jobs/old/")]
    assert per_item(back) == per_item(outputs)
