"""Files of `embedserve embed`: read texts from .txt/.jsonl/.csv, write a job's result as .npy/.jsonl/.parquet."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import msgpack

from embedserve import defaults

INPUTS = (".txt", ".jsonl", ".csv")
OUTPUTS = (".npy", ".jsonl", ".parquet")


class InputError(Exception):
    """A file the command cannot read or write; the message names the file (and line)."""


def read_texts(path: str) -> tuple[list[str], int]:
    """The texts of an input file, in order, and how many blank lines were skipped."""
    suffix = Path(path).suffix.lower()
    if suffix not in INPUTS:
        raise InputError(f"{path}: INPUT must end in {', '.join(INPUTS)}")
    try:
        with open(path, encoding="utf-8-sig", newline="" if suffix == ".csv" else None) as f:
            texts, skipped = _READERS[suffix](f, path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None
    if not texts:
        raise InputError(f"{path}: no texts in it")
    return texts, skipped


def _txt(f, path: str) -> tuple[list[str], int]:
    # Blank lines are skipped (row i of the output is the i-th non-blank line): a trailing
    # newline or a blank separator line should not fail a million-line file.
    texts, skipped = [], 0
    for line in f:
        text = line.rstrip("\r\n")
        if text.strip():
            texts.append(text)
        else:
            skipped += 1
    return texts, skipped


def _jsonl(f, path: str) -> tuple[list[str], int]:
    texts, skipped = [], 0
    for number, line in enumerate(f, start=1):
        if not line.strip():
            skipped += 1
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path}:{number}: not JSON ({exc})") from None
        if isinstance(value, dict):
            value = value.get("text")
        if not isinstance(value, str):
            raise InputError(f"{path}:{number}: expected a JSON string or an object with a string 'text' field")
        texts.append(value)
    return texts, skipped


def _csv(f, path: str) -> tuple[list[str], int]:
    # The first row is the header: the `text` column is used, or the first column if none is named so.
    rows = csv.reader(f)
    header = next(rows, None)
    if header is None:
        return [], 0
    column = header.index("text") if "text" in header else 0
    texts, skipped = [], 0
    for row in rows:
        if not row:
            skipped += 1
            continue
        if column >= len(row):
            raise InputError(f"{path}:{rows.line_num}: no column {column + 1} ('{header[column]}') in this row")
        texts.append(row[column])
    return texts, skipped


_READERS = {".txt": _txt, ".jsonl": _jsonl, ".csv": _csv}


def check_output(path: str) -> None:
    """Refuse an output this install cannot write, before any work is submitted."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUTS:
        raise InputError(f"{path}: OUTPUT must end in {', '.join(OUTPUTS)}")
    needs = {".npy": ("numpy", "pip install numpy (or embedserve[worker])"),
             ".parquet": ("pyarrow", "pip install pyarrow")}.get(suffix)
    if needs is not None:
        try:
            __import__(needs[0])
        except ImportError:
            raise InputError(f"writing {suffix} needs {needs[0]}, which is not installed: {needs[1]}; "
                             f"or write .jsonl") from None


def write_output(stream, path: str) -> int:
    """Write the result read from `stream` (ndjson for .jsonl, else msgpack) to `path`; returns failed inputs."""
    part = path + ".part"  # renamed into place only once complete
    suffix = Path(path).suffix.lower()
    try:
        failed = _write_jsonl(stream, part) if suffix == ".jsonl" else _write_matrix(_read_msgpack(stream), part, suffix)
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.remove(part)
    return failed


def _write_jsonl(stream, part: str) -> int:
    # The server's lines are already {"index", "embedding"} or {"index", "error"}: copied as they come.
    failed = 0
    with open(part, "wb") as out:
        for line in stream:
            if line.startswith(b'{"index"') and b'"error"' in line:
                failed += 1
            out.write(line)
    return failed


def _read_msgpack(stream) -> dict:
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=0)  # 0: no cap (the matrix can be GiBs)
    while piece := stream.read(defaults.EMBED_CLI_READ_BYTES):
        unpacker.feed(piece)
    result = next(unpacker, None)
    if not isinstance(result, dict) or result.get("dtype") != "<f4":
        raise InputError("the server's result is not the expected msgpack matrix")
    return result


def _write_matrix(result: dict, part: str, suffix: str) -> int:
    rows, dim = result["shape"]
    errors = {e["index"]: e["error"] for e in result["errors"]}
    if suffix == ".npy":
        import numpy as np

        with open(part, "wb") as out:  # np.save on a path would append ".npy" to "x.npy.part"
            np.save(out, np.frombuffer(result["data"], dtype="<f4").reshape(rows, dim))
        return len(errors)
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = pa.Array.from_buffers(pa.float32(), rows * dim, [None, pa.py_buffer(result["data"])])
    failed = pa.array([i in errors for i in range(rows)])
    embedding = pa.FixedSizeListArray.from_arrays(values, dim, mask=failed)
    messages = pa.array([errors[i]["message"] if i in errors else None for i in range(rows)], pa.string())
    pq.write_table(pa.table({"index": pa.array(range(rows), pa.int64()), "embedding": embedding,
                             "error": messages}), part)
    return len(errors)
