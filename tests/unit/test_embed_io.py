"""`embedserve embed` file handling: reading each input format, refusing bad files, writing results."""

from __future__ import annotations

import io
import json
import math
import struct
import sys

import msgpack
import numpy as np
import pytest

from embedserve.embed_io import InputError, check_output, read_texts, write_output


def write(tmp_path, name: str, content: str):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("name, content, texts, skipped", [
    ("a.txt", "one\n\ntwo, with comma\r\n  \nthree", ["one", "two, with comma", "three"], 2),
    ("a.txt", "\ufeffbom first\n", ["bom first"], 0),
    ("a.jsonl", '{"text": "one", "id": 7}\n"two"\n\n{"text": ""}\n', ["one", "two", ""], 1),
    ("a.csv", 'id,text\n1,"hello, world"\n\n2,"multi\nline"\n', ["hello, world", "multi\nline"], 1),
    ("a.csv", "body,id\nfirst,1\nsecond,2\n", ["first", "second"], 0),  # no `text` column: the first
])
def test_reads_each_format(tmp_path, name, content, texts, skipped):
    assert read_texts(write(tmp_path, name, content)) == (texts, skipped)


@pytest.mark.parametrize("name, content, message", [
    ("missing.txt", None, "no such file"),
    ("a.txt", "\n  \n", "no texts"),
    ("a.csv", "", "no texts"),
    ("a.csv", "text\n", "no texts"),
    ("a.pdf", "x", "INPUT must end in .txt, .jsonl, .csv"),
    ("a.jsonl", '{"text": "ok"}\n{"body": "no text"}\n', "a.jsonl:2: expected a JSON string"),
    ("a.jsonl", '{"text": 5}\n', "a.jsonl:1: expected"),
    ("a.jsonl", "{not json\n", "a.jsonl:1: not JSON"),
    ("a.csv", "a,text\nonly-one-column\n", "a.csv:2: no column 2 ('text')"),
])
def test_bad_inputs_name_the_problem(tmp_path, name, content, message):
    path = str(tmp_path / name) if content is None else write(tmp_path, name, content)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        read_texts(path)


def test_non_utf8_input_is_refused(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"caf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_texts(str(path))


@pytest.mark.parametrize("name", ["out.csv", "out", "out.npz"])
def test_unknown_output_extension(name):
    with pytest.raises(InputError, match="OUTPUT must end in"):
        check_output(name)


def test_parquet_without_pyarrow_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what `import pyarrow` sees when it is not installed
    with pytest.raises(InputError, match="pip install pyarrow"):
        check_output("out.parquet")


def matrix_stream(rows: list[list[float] | None], dim: int) -> io.BytesIO:
    """A result as the server sends it with Accept: application/msgpack (failed rows NaN)."""
    data = b"".join(struct.pack(f"<{dim}f", *(row if row is not None else [math.nan] * dim)) for row in rows)
    errors = [{"index": i, "error": {"message": f"input {i} failed", "type": "invalid_request_error"}}
              for i, row in enumerate(rows) if row is None]
    return io.BytesIO(msgpack.packb({"model": "m", "shape": [len(rows), dim], "dtype": "<f4", "data": data,
                                     "errors": errors, "usage": {}}, use_bin_type=True))


def test_npy_output_keeps_order_and_nan_rows(tmp_path):
    out = str(tmp_path / "out.npy")
    failed = write_output(matrix_stream([[1, 2, 3], None, [0.5, -1, 7]], 3), out)
    matrix = np.load(out)
    assert failed == 1
    assert matrix.dtype == np.float32 and matrix.shape == (3, 3)
    assert matrix[0].tolist() == [1, 2, 3] and matrix[2].tolist() == [0.5, -1, 7]
    assert np.isnan(matrix[1]).all()
    assert not (tmp_path / "out.npy.part").exists()


def test_jsonl_output_is_copied_line_by_line_and_errors_counted(tmp_path):
    lines = [{"index": 0, "embedding": [0.1, 0.2]}, {"index": 1, "error": {"message": "too long"}},
             {"index": 2, "embedding": [0.3, 0.4]}]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    out = tmp_path / "out.jsonl"
    assert write_output(io.BytesIO(body), str(out)) == 1
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines


def test_a_broken_download_leaves_no_output(tmp_path):
    out = tmp_path / "out.npy"
    with pytest.raises(InputError, match="not the expected msgpack"):
        write_output(io.BytesIO(msgpack.packb({"unexpected": 1})), str(out))
    assert not out.exists() and not (tmp_path / "out.npy.part").exists()


def test_parquet_output_has_null_embeddings_and_messages_for_failures(tmp_path):
    import pyarrow.parquet as pq

    out = str(tmp_path / "out.parquet")
    assert write_output(matrix_stream([[1, 2], None, [3, 4]], 2), out) == 1
    table = pq.read_table(out).to_pydict()
    assert table["index"] == [0, 1, 2]
    assert table["embedding"] == [[1.0, 2.0], None, [3.0, 4.0]]
    assert table["error"] == [None, "input 1 failed", None]
