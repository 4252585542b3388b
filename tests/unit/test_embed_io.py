"""`embedserve embed` file handling: input files as uploads, results streamed into .npy/.jsonl/.parquet."""

from __future__ import annotations

import io
import json
import math
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import numpy as np
import pytest

from api.bulk.files import content_key, user_data_inputs
from embedserve.cli.embed_files import (
    IncompleteResult,
    InputError,
    check_output,
    result_format,
    scan_input,
    upload_blocks,
    write_output,
)
from embedserve.jobs.store import open_store

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, name: str, content: str):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


def as_server_reads_it(tmp_path, path: str) -> tuple[list[tuple], int]:
    """The (text, id, error) items the server makes of the upload, read as the API reads stored files."""
    source = scan_input(path)
    body = b"".join(upload_blocks(source))
    assert len(body) == source.length
    store = open_store((tmp_path / "store").as_uri())
    store.put(content_key("file-test"), body)
    items = list(user_data_inputs(store, {"id": "file-test", "filename": source.upload_name}))
    assert len(items) == source.texts  # the count printed is the job's total
    return items, source.skipped


@pytest.mark.parametrize("name, content, texts, skipped", [
    ("a.txt", "one\n\ntwo, with comma\r\n  \nthree", ["one", "two, with comma", "three"], 2),
    ("a.txt", "\ufeffbom first\n", ["bom first"], 0),
    ("a.jsonl", '{"text": "one", "id": "7"}\n"two"\n\n{"text": "three"}\n', ["one", "two", "three"], 1),
    ("a.csv", 'id,text\n1,"hello, world"\n\n2,"multi\nline"\n', ["hello, world", "multi\nline"], 1),
    ("a.csv", "body,id\nfirst,1\nsecond,2\n", ["first", "second"], 0),  # no `text` column: the first
    ("a.csv", 'text\n"caf\u00e9 \\ ""quoted"" \u2028 sep"\n', ["caf\u00e9 \\ \"quoted\" \u2028 sep"], 0),
])
def test_each_format_reaches_the_server_as_its_texts(tmp_path, name, content, texts, skipped):
    items, blank = as_server_reads_it(tmp_path, write(tmp_path, name, content))
    assert [text for text, _, _ in items] == texts and blank == skipped
    assert all(error is None for _, _, error in items)


def test_jsonl_ids_travel_and_bad_lines_fail_alone(tmp_path):
    path = write(tmp_path, "a.jsonl", '{"text": "ok", "id": "doc-1"}\n{"body": "no text"}\n{not json\n"fine"\n')
    items, _ = as_server_reads_it(tmp_path, path)
    assert [(text, item_id) for text, item_id, _ in items] == [("ok", "doc-1"), (None, None), (None, None),
                                                               ("fine", None)]
    assert [error["code"] if error else None for _, _, error in items] == [None, "invalid_input", "invalid_input",
                                                                           None]


def test_non_utf8_txt_line_fails_alone_and_csv_short_row_too(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"good\ncaf\xe9\n")
    items, _ = as_server_reads_it(tmp_path, str(tmp_path / "a.txt"))
    assert items[0] == ("good", None, None) and items[1][2]["code"] == "invalid_input"
    items, _ = as_server_reads_it(tmp_path, write(tmp_path, "b.csv", "a,text\nonly-one-column\nx,fine\n"))
    assert items[0][2]["code"] == "invalid_input" and items[1] == ("fine", None, None)


@pytest.mark.parametrize("name, content, message", [
    ("missing.txt", None, "no such file"),
    ("a.txt", "\n  \n", "no texts"),
    ("a.jsonl", "\n\n", "no texts"),
    ("a.csv", "", "no texts"),
    ("a.csv", "text\n", "no texts"),
    ("a.pdf", "x", "INPUT must end in .txt, .jsonl, .csv"),
])
def test_files_refused_before_upload_name_the_problem(tmp_path, name, content, message):
    path = str(tmp_path / name) if content is None else write(tmp_path, name, content)
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        scan_input(path)


def test_non_utf8_csv_is_refused(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"text\ncaf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8"):
        scan_input(str(path))


def test_a_file_changed_between_scan_and_upload_fails(tmp_path):
    path = write(tmp_path, "a.txt", "one\ntwo\n")
    source = scan_input(path)
    write(tmp_path, "a.txt", "one\ntwo\nthree\n")
    with pytest.raises(InputError, match="changed"):
        b"".join(upload_blocks(source))


@pytest.mark.parametrize("name", ["out.csv", "out", "out.npz"])
def test_unknown_output_extension(name):
    with pytest.raises(InputError, match="OUTPUT must end in"):
        check_output(name)


def test_parquet_without_pyarrow_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what `import pyarrow` sees when it is not installed
    with pytest.raises(InputError, match="pip install pyarrow"):
        check_output("out.parquet")


def test_outputs_ask_for_the_streamed_formats():
    assert result_format("x.jsonl") == "application/x-ndjson"
    assert result_format("x.npy") == result_format("x.PARQUET") == "application/vnd.embedserve.msgpack-stream"


def frames(rows: list[list[float] | None], dim: int, per_block: int, ids: list | None = None,
           trailer: bool = True) -> bytes:
    """A result as the server sends it with Accept: application/vnd.embedserve.msgpack-stream."""
    out = [msgpack.packb({"model": "m", "dim": dim, "dtype": "<f4", "total": len(rows)})]
    for start in range(0, len(rows), per_block):
        block = rows[start:start + per_block]
        data = b"".join(struct.pack(f"<{dim}f", *(row if row is not None else [math.nan] * dim)) for row in block)
        errors = [{"index": start + i, "error": {"message": f"input {start + i} failed",
                                                 "type": "invalid_request_error"}}
                  for i, row in enumerate(block) if row is None]
        frame = {"start": start, "count": len(block), "data": data, "errors": errors}
        if ids is not None:
            frame["ids"] = ids[start:start + per_block]
        out.append(msgpack.packb(frame, use_bin_type=True))
    if trailer:
        out.append(msgpack.packb({"usage": {"prompt_tokens": 3, "total_tokens": 3}}))
    return b"".join(out)


def test_npy_output_goes_through_open_memmap_in_order_with_nan_rows(tmp_path, monkeypatch):
    import numpy.lib.format

    made = []
    real = numpy.lib.format.open_memmap
    monkeypatch.setattr(numpy.lib.format, "open_memmap", lambda *a, **k: made.append(k) or real(*a, **k))
    rows = [[1, 2, 3], None, [0.5, -1, 7], [4, 5, 6], None]
    out = str(tmp_path / "out.npy")
    failed = write_output(io.BytesIO(frames(rows, 3, per_block=2)), out)
    assert made and made[0]["shape"] == (5, 3) and made[0]["mode"] == "w+"
    matrix = np.load(out)
    assert failed == 2
    assert matrix.dtype == np.float32 and matrix.shape == (5, 3)
    assert matrix[[0, 2, 3]].tolist() == [[1, 2, 3], [0.5, -1, 7], [4, 5, 6]]
    assert np.isnan(matrix[[1, 4]]).all()
    assert not (tmp_path / "out.npy.part").exists()


def test_npy_when_every_input_failed(tmp_path):
    out = str(tmp_path / "out.npy")
    assert write_output(io.BytesIO(frames([None, None], 0, per_block=1)), out) == 2
    assert np.load(out).shape == (2, 0)


def test_jsonl_output_is_copied_line_by_line_and_errors_counted(tmp_path):
    lines = [{"index": 0, "id": "error", "embedding": [0.1, 0.2]}, {"index": 1, "error": {"message": "too long"}},
             {"index": 2, "id": ', "error": ', "embedding": [0.3, 0.4]}, {"index": 3, "id": "x", "error": {}}]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    out = tmp_path / "out.jsonl"
    assert write_output(io.BytesIO(body), str(out)) == 2
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines


def test_jsonl_output_counts_the_failed_lines_the_server_writes(tmp_path):
    """The API writes ndjson with orjson (no spaces: `,"error":`); its failed lines are counted."""
    import orjson

    lines = [{"index": 0, "id": ',"error":', "embedding": [0.1, 0.2]}, {"index": 1, "error": {"message": "too long"}},
             {"index": 2, "embedding": [0.3, 0.4]}, {"index": 3, "id": "x", "error": {"message": "bad"}}]
    body = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    out = tmp_path / "out.jsonl"
    assert write_output(io.BytesIO(body), str(out)) == 2
    assert out.read_bytes() == body


@pytest.mark.parametrize("body, error", [
    (msgpack.packb({"unexpected": 1}), InputError),
    (frames([[1.0], [2.0], [3.0]], 1, per_block=1, trailer=False), IncompleteResult),  # cut before its end
    (frames([[1.0], [2.0], [3.0]], 1, per_block=2)[:-30], IncompleteResult),  # cut inside a block
])
@pytest.mark.parametrize("name", ["out.npy", "out.parquet"])
def test_a_broken_download_leaves_no_output(tmp_path, body, error, name):
    out = tmp_path / name
    with pytest.raises(error):
        write_output(io.BytesIO(body), str(out))
    assert not out.exists() and not (tmp_path / (name + ".part")).exists()


def test_parquet_output_has_ids_null_embeddings_and_messages_for_failures(tmp_path):
    import pyarrow.parquet as pq

    out = str(tmp_path / "out.parquet")
    stream = frames([[1, 2], None, [3, 4]], 2, per_block=2, ids=["a", None, "c"])
    assert write_output(io.BytesIO(stream), out) == 1
    table = pq.read_table(out).to_pydict()
    assert table["index"] == [0, 1, 2]
    assert table["id"] == ["a", None, "c"]
    assert table["embedding"] == [[1.0, 2.0], None, [3.0, 4.0]]
    assert table["error"] == [None, "input 1 failed", None]


def test_npy_memory_stays_bounded_for_a_big_result(tmp_path):
    """A 384 MiB matrix streamed in 8 MiB blocks: the writing process's peak RSS stays far below it."""
    script = textwrap.dedent(f"""
        import resource, struct, msgpack
        from embedserve.cli.embed_files import write_output

        dim, per_block, blocks = 1024, 2048, 48
        block = struct.pack("<f", 0.25) * (dim * per_block)

        def pieces():
            yield msgpack.packb({{"model": "m", "dim": dim, "dtype": "<f4", "total": per_block * blocks}})
            for b in range(blocks):
                frame = msgpack.packb({{"start": b * per_block, "count": per_block, "data": block, "errors": []}})
                for i in range(0, len(frame), 1 << 20):
                    yield frame[i:i + (1 << 20)]
            yield msgpack.packb({{"usage": {{}}}})

        class Stream:
            def __init__(self):
                self.parts, self.rest = pieces(), b""
            def read(self, n):
                while len(self.rest) < n:
                    more = next(self.parts, None)
                    if more is None:
                        break
                    self.rest += more
                out, self.rest = self.rest[:n], self.rest[n:]
                return out

        import numpy  # its own footprint is not the result's
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert write_output(Stream(), {str(tmp_path / "big.npy")!r}) == 0
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    grown_mib = int(done.stdout.strip())
    assert grown_mib < 100, f"peak RSS grew {grown_mib} MiB writing a 384 MiB matrix"
    matrix = np.load(tmp_path / "big.npy", mmap_mode="r")
    assert matrix.shape == (2048 * 48, 1024) and float(matrix[-1, -1]) == 0.25


# The msgpack stream of a job with an embedding_type: its dtype, its row widths, failed rows zeros.
TYPED = {"float": ("<f4", np.float32, 12), "int8": ("|i1", np.int8, 12), "uint8": ("|u1", np.uint8, 12),
         "binary": ("|i1", np.int8, 2), "ubinary": ("|u1", np.uint8, 2)}  # dim 12: 12 values, or 2 packed bytes


def typed_rows(embedding_type: str, n: int) -> np.ndarray:
    """n distinct rows of the type, as the server's bytes would decode (covering each byte's sign)."""
    dtype, numpy_type, columns = TYPED[embedding_type]
    if numpy_type is np.float32:
        return (np.arange(n * columns, dtype=np.float32).reshape(n, columns) - 20) / 7
    info = np.iinfo(numpy_type)
    return (np.arange(n * columns).reshape(n, columns) * 37 % (info.max - info.min + 1) + info.min).astype(numpy_type)


def typed_frames(embedding_type: str, rows: np.ndarray, failed: set[int], dim: int = 12, per_block: int = 2,
                 dtype: str | None = None, row_bytes: int | None = None) -> bytes:
    """A job's result stream as the server sends it for `embedding_type` (failed rows: zeros, NaN for float)."""
    dtype = dtype or TYPED[embedding_type][0]
    out = [msgpack.packb({"model": "m", "dim": dim, "dtype": dtype, "embedding_type": embedding_type,
                          "total": len(rows)})]
    for start in range(0, len(rows), per_block):
        data, errors = b"", []
        for i in range(start, min(start + per_block, len(rows))):
            row = rows[i].tobytes()
            if i in failed:
                row = np.full(rows.shape[1], np.nan, np.float32).tobytes() if embedding_type == "float" \
                    else bytes(len(row))
                errors.append({"index": i, "error": {"message": f"input {i} failed"}})
            data += row[:row_bytes] if row_bytes is not None else row
        out.append(msgpack.packb({"start": start, "count": min(per_block, len(rows) - start), "data": data,
                                  "errors": errors}, use_bin_type=True))
    out.append(msgpack.packb({"usage": {"prompt_tokens": 3, "total_tokens": 3}}))
    return b"".join(out)


@pytest.mark.parametrize("embedding_type", TYPED)
def test_npy_keeps_the_jobs_type_and_width(tmp_path, embedding_type):
    _, numpy_type, columns = TYPED[embedding_type]
    rows = typed_rows(embedding_type, 5)
    out = str(tmp_path / "out.npy")
    assert write_output(io.BytesIO(typed_frames(embedding_type, rows, failed={3})), out) == 1
    matrix = np.load(out)
    assert matrix.dtype == numpy_type and matrix.shape == (5, columns)
    good = [0, 1, 2, 4]
    np.testing.assert_array_equal(matrix[good], rows[good])
    if embedding_type == "float":
        assert np.isnan(matrix[3]).all()
    else:
        assert not matrix[3].any()  # the server's zero row


@pytest.mark.parametrize("embedding_type", TYPED)
def test_parquet_keeps_the_jobs_type_and_width(tmp_path, embedding_type):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, numpy_type, columns = TYPED[embedding_type]
    rows = typed_rows(embedding_type, 5)
    out = str(tmp_path / "out.parquet")
    assert write_output(io.BytesIO(typed_frames(embedding_type, rows, failed={1}, per_block=3)), out) == 1
    table = pq.read_table(out)
    field = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(field) and field.list_size == columns
    assert field.value_type == pa.from_numpy_dtype(numpy_type)
    embedding = table.column("embedding").to_pylist()
    assert embedding[1] is None and table.column("error").to_pylist()[1] == "input 1 failed"
    good = [0, 2, 3, 4]
    np.testing.assert_array_equal(np.asarray([embedding[i] for i in good], dtype=numpy_type), rows[good])
    metadata = table.schema.metadata or {}
    if embedding_type == "float":
        assert b"embedserve.embedding_type" not in metadata  # the float file is the one written before types
    else:
        assert metadata[b"embedserve.embedding_type"] == embedding_type.encode()
        assert metadata[b"embedserve.dim"] == b"12"


def test_bit_types_pack_a_dim_that_is_not_a_multiple_of_8(tmp_path):
    rows = typed_rows("ubinary", 3)[:, :2]  # dim 10: ceil(10/8) = 2 bytes a row
    out = str(tmp_path / "out.npy")
    assert write_output(io.BytesIO(typed_frames("ubinary", rows, failed=set(), dim=10)), out) == 0
    np.testing.assert_array_equal(np.load(out), rows)


def test_float_parquet_is_byte_identical_with_or_without_the_type_in_the_header(tmp_path):
    """A server from before embedding_type sent no `embedding_type`: the same file either way."""
    rows = [[1, 2], None, [3, 4]]
    old = frames(rows, 2, per_block=2, ids=["a", None, "c"])
    new = old.replace(msgpack.packb("total"), msgpack.packb("embedding_type") + msgpack.packb("float")
                      + msgpack.packb("total"))
    new = bytes([new[0] + 1]) + new[1:]  # the header map has one more entry (a fixmap's count is in its first byte)
    assert next(msgpack.Unpacker(io.BytesIO(new)))["embedding_type"] == "float"
    for stream, name in ((old, "old.parquet"), (new, "new.parquet")):
        assert write_output(io.BytesIO(stream), str(tmp_path / name)) == 1
    assert (tmp_path / "old.parquet").read_bytes() == (tmp_path / "new.parquet").read_bytes()


@pytest.mark.parametrize("header", [
    {"dtype": "<f2"},  # a dtype this client does not know
    {"dtype": "<f8", "embedding_type": "float"},
    {"dtype": "|u1"},  # no embedding_type: uint8 or ubinary? the widths differ
    {"dtype": "|u1", "embedding_type": "int8"},  # int8 is "|i1"
    {"dtype": "|i1", "embedding_type": "ternary"},
    {"dtype": "|i1", "embedding_type": None},
])
@pytest.mark.parametrize("name", ["out.npy", "out.parquet"])
def test_an_unknown_or_inconsistent_dtype_is_refused(tmp_path, header, name):
    body = msgpack.packb({"model": "m", "dim": 8, "total": 0, **header}) + msgpack.packb({"usage": {}})
    with pytest.raises(InputError, match="not the expected msgpack stream"):
        write_output(io.BytesIO(body), str(tmp_path / name))
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("embedding_type, row_bytes", [("ubinary", 12), ("int8", 2), ("int8", 48), ("uint8", 11)])
def test_a_block_of_the_wrong_width_for_its_type_is_refused(tmp_path, embedding_type, row_bytes):
    """Rows of 12 bytes in a ubinary dim-12 stream (2 bytes a row), or 1/8 of the bytes int8 needs: malformed."""
    rows = np.zeros((2, max(row_bytes, 12)), np.uint8)
    body = typed_frames(embedding_type, rows, failed=set(), row_bytes=row_bytes)
    with pytest.raises(InputError, match="out of order or malformed"):
        write_output(io.BytesIO(body), str(tmp_path / "out.npy"))
