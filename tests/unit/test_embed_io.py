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

from api.files import content_key, user_data_inputs
from embedserve.embed_io import (IncompleteResult, InputError, check_output, result_format, scan_input, upload_blocks,
                                 write_output)
from embedserve.store import open_store

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
        from embedserve.embed_io import write_output

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
