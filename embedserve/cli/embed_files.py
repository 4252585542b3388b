"""Files of `embedserve embed`: an input file as a user_data upload, a job's streamed result as .npy/.jsonl/.parquet.

Nothing here holds a whole input or a whole result in memory: the upload body is the file read a
block at a time (a .csv is turned into JSONL lines on the way), and the result is written as it
arrives (ndjson lines copied for .jsonl; the framed msgpack stream, one block of rows at a time,
for .npy and .parquet). The vectors keep the job's `embedding_type`, which the stream's header names:
float32, or int8/uint8 elements (packed bits for binary/ubinary, ceil(dim/8) per row).
"""

from __future__ import annotations

import array
import csv
import itertools
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack

from embedserve import defaults
from embedserve.vector_types import FLOAT, TYPES, VectorType, vector_type

INPUTS = (".txt", ".jsonl", ".csv")
OUTPUTS = (".npy", ".jsonl", ".parquet")
# The result formats the command downloads.
NDJSON = "application/x-ndjson"
MSGPACK_STREAM = "application/vnd.embedserve.msgpack-stream"
# Most bytes one object of the msgpack stream may take (the server's blocks are ~8 MiB).
MAX_FRAME_BYTES = 1 << 30
# Bytes of the input file read (or of converted CSV lines sent) per step of the upload.
UPLOAD_BLOCK_BYTES = 1 << 20


class InputError(Exception):
    """A file the command cannot read or write; the message names the file (and line)."""


class IncompleteResult(Exception):
    """The result stream ended before its end (a cut download): fetching it again may help."""


@dataclass
class Source:
    """An input file checked for upload: its texts (non-blank lines or rows) and the upload's size."""

    path: str
    suffix: str
    texts: int
    skipped: int
    upload_name: str  # the file name sent to the server: its suffix (.txt/.jsonl) tells the format
    length: int  # bytes of the upload body's file part


def scan_input(path: str) -> Source:
    """Check an input file and count its texts, reading it once a block at a time.

    .txt and .jsonl are uploaded as they are: the server reads them as this command always did
    (blank lines skipped, a UTF-8 BOM dropped), and a line that is not a text fails alone as a
    per-item error. A .csv is converted to JSONL (one JSON string per row) while it is sent.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in INPUTS:
        raise InputError(f"{path}: INPUT must end in {', '.join(INPUTS)}")
    try:
        if suffix == ".csv":
            texts, skipped, length = 0, 0, 0
            for line in _csv_lines(path):
                if line is None:
                    skipped += 1
                else:
                    texts += 1
                    length += len(line)
        else:
            texts, skipped = _count_lines(path)
            length = os.path.getsize(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None
    if not texts:
        raise InputError(f"{path}: no texts in it")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).name)[:100]
    upload_name = stem if suffix != ".csv" else stem + ".jsonl"
    return Source(path=path, suffix=suffix, texts=texts, skipped=skipped, upload_name=upload_name, length=length)


def _count_lines(path: str) -> tuple[int, int]:
    """Non-blank and blank lines of a .txt/.jsonl file, as the server counts them (bytes, BOM dropped)."""
    texts = skipped = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f):
            if number == 0:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if line.strip():
                texts += 1
            else:
                skipped += 1
    return texts, skipped


def _csv_lines(path: str) -> Iterator[bytes | None]:
    """A CSV's rows as JSONL lines (a JSON string; {"text": null} for a row without the column, which
    then fails alone); None for a blank row. The first row is the header: the `text` column is
    used, or the first column if none is named so."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            return
        column = header.index("text") if "text" in header else 0
        for row in rows:
            if not row:
                yield None
            elif column >= len(row):
                yield b'{"text": null}\n'
            else:
                yield json.dumps(row[column], ensure_ascii=False).encode() + b"\n"


def upload_blocks(source: Source) -> Iterator[bytes]:
    """The upload's file part: the file's bytes, or the CSV's JSONL lines, about a block at a time.

    The bytes must be those `scan_input` counted (`source.length`); a file changed in between fails.
    """
    sent = 0
    if source.suffix == ".csv":
        pending, size = [], 0
        for line in _csv_lines(source.path):
            if line is None:
                continue
            pending.append(line)
            size += len(line)
            if size >= UPLOAD_BLOCK_BYTES:
                sent += size
                _check_sent(source, sent)
                yield b"".join(pending)
                pending, size = [], 0
        if pending:
            sent += size
            _check_sent(source, sent)
            yield b"".join(pending)
    else:
        with open(source.path, "rb") as f:
            while block := f.read(UPLOAD_BLOCK_BYTES):
                sent += len(block)
                _check_sent(source, sent)
                yield block
    if sent != source.length:
        raise InputError(f"{source.path}: the file changed while it was being sent")


def _check_sent(source: Source, sent: int) -> None:
    if sent > source.length:
        raise InputError(f"{source.path}: the file changed while it was being sent")


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


def result_format(path: str) -> str:
    """The Accept header the output asks the server for: ndjson lines for .jsonl, else the msgpack stream."""
    return NDJSON if Path(path).suffix.lower() == ".jsonl" else MSGPACK_STREAM


def write_output(stream, path: str) -> int:
    """Write the result read from `stream` (see result_format) to `path`; returns failed inputs.

    Written to `path`.part and renamed when complete, so a half-written file never has the name.
    """
    part = path + ".part"
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".jsonl":
            failed = _write_jsonl(stream, part)
        elif suffix == ".npy":
            failed = _write_npy(read_frames(stream), part)
        else:
            failed = _write_parquet(read_frames(stream), part)
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.remove(part)
    return failed


def _write_jsonl(stream, part: str) -> int:
    # The server's lines are {"index", "id"?, "embedding"} or {"index", "id"?, "error"}: copied as they
    # come. The API writes them with orjson (`,"error":`, no spaces; json.dumps' `, "error": ` is also
    # taken). Neither can occur inside a JSON string (its quote would be escaped), so it marks a failed
    # line whatever an id holds.
    failed = 0
    with open(part, "wb") as out:
        for line in stream:
            if b',"error":' in line or b', "error": ' in line:
                failed += 1
            out.write(line)
    return failed


def read_frames(stream) -> Iterator[dict]:
    """The framed msgpack stream's header, then its blocks, checked: rows in order, nothing missing.

    IncompleteResult when the stream ends before its trailer (or with rows missing).
    """
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_FRAME_BYTES)
    header, trailer, expected = None, None, 0
    while True:
        piece = stream.read(defaults.EMBED_CLI_READ_BYTES)
        if piece:
            unpacker.feed(piece)
        for frame in unpacker:
            if not isinstance(frame, dict):
                raise InputError("the server's result is not the expected msgpack stream")
            if header is None:
                kind = header_type(frame)
                if kind is None or not isinstance(frame.get("dim"), int) or not isinstance(frame.get("total"), int):
                    raise InputError("the server's result is not the expected msgpack stream")
                header, width = frame, kind.row_bytes(frame["dim"])
                yield frame
            elif trailer is not None:
                raise InputError("the server's result has data after its end")
            elif "start" not in frame:
                trailer = frame
            else:
                count = frame.get("count")
                if frame.get("start") != expected or not isinstance(count, int) or \
                        len(frame.get("data", b"")) != count * width:
                    raise InputError("the server's result stream is out of order or malformed")
                expected += count
                yield frame
        if not piece:
            break
    if header is None or trailer is None or expected != header["total"]:
        raise IncompleteResult(f"the result stream ended early ({expected} rows of "
                               f"{header['total'] if header else '?'})")


def header_type(header: dict) -> VectorType | None:
    """The vector type a stream's header announces, or None when this client does not know it.

    A server from before embedding_type sent no `embedding_type` (its dtype was always "<f4": float).
    The dtype must be the one the type has: "|u1" alone cannot say uint8 from ubinary (the row widths differ).
    """
    name = header.get("embedding_type", FLOAT)
    kind = TYPES.get(name) if isinstance(name, str) else None
    return kind if kind is not None and header.get("dtype") == kind.dtype else None


def _write_npy(frames: Iterator[dict], part: str) -> int:
    """An (n, dim) .npy of the job's dtype (float32, int8, uint8; (n, ceil(dim/8)) packed bytes for the bit
    types): open_memmap makes the file, each block goes through a memory map of its own rows, unmapped once
    written, so memory holds one block however big the matrix."""
    import numpy as np
    from numpy.lib.format import open_memmap

    header = next(frames)
    kind = vector_type(header.get("embedding_type"))
    total, dtype = header["total"], kind.dtype
    dim = kind.values(header["dim"])  # the columns: dimensions, or packed bytes
    failed = 0
    if total * dim == 0:  # nothing to map: a zero-size matrix (an empty result, or every input failed)
        for frame in frames:
            failed += len(frame["errors"])
        with open(part, "wb") as out:
            np.save(out, np.empty((total, dim), dtype=dtype))
        return failed
    matrix = open_memmap(part, mode="w+", dtype=dtype, shape=(total, dim))
    offset = matrix.offset  # where the rows begin, after the .npy header
    del matrix
    width = kind.row_bytes(header["dim"])
    for frame in frames:
        failed += len(frame["errors"])
        count = frame["count"]
        if not count:
            continue
        rows = np.memmap(part, dtype=dtype, mode="r+", offset=offset + frame["start"] * width, shape=(count, dim))
        rows[:] = np.frombuffer(frame["data"], dtype=dtype).reshape(count, dim)
        rows.flush()
        del rows
    return failed


def _windows_row(row: list | None, kind: VectorType) -> list | None:
    """One row's windows from the stream (vectors as bytes) as Parquet's list of structs takes them."""
    if row is None:
        return None
    return [{**w, "embedding": _values(w["embedding"], kind)} for w in row]


def _values(data: bytes, kind: VectorType) -> list:
    """A vector's bytes from the stream (little-endian for float) as numbers."""
    values = array.array(kind.typecode, data)
    if kind.itemsize > 1 and sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def _write_parquet(frames: Iterator[dict], part: str) -> int:
    """Columns index, id, embedding (null when failed), error (the message), and windows for a job that asked
    for `long_input: windows` (as the server's Parquet has them); a row group per block.

    `embedding` is a fixed-size list of the job's element: float32, or int8/uint8 (ceil(dim/8) packed
    bytes for the bit types); for a type other than float the schema's metadata names it and the dim,
    as the server's Parquet does (`embedserve.embedding_type`, `embedserve.dim`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embedserve.jobs.results import arrow_element  # the server's own element types

    header = next(frames)
    kind = vector_type(header.get("embedding_type"))
    element = arrow_element(kind.name)
    dim = kind.values(header["dim"])  # the list's size: dimensions, or packed bytes
    vector = pa.list_(element, dim) if dim > 0 else pa.list_(element)
    # Float files keep the schema they always had (no metadata); the others say what their integers are.
    metadata = None if kind.name == FLOAT else {"embedserve.embedding_type": kind.name,
                                                "embedserve.dim": str(header["dim"])}
    first = next(frames, None)
    windows = first is not None and "windows" in first  # blocks carry windows when the job asked for them
    columns = [("index", pa.int64()), ("id", pa.string()), ("embedding", vector), ("error", pa.string())]
    if windows:
        columns.append(("windows", pa.list_(pa.struct([("embedding", vector), ("text_start", pa.int64()),
                                                       ("text_end", pa.int64()), ("tokens", pa.int32())]))))
    schema = pa.schema(columns, metadata=metadata)
    failed = 0
    with pq.ParquetWriter(part, schema) as writer:
        for frame in itertools.chain([first] if first is not None else [], frames):
            start, count = frame["start"], frame["count"]
            errors = {e["index"]: e["error"] for e in frame["errors"]}
            failed += len(errors)
            bad = [start + i in errors for i in range(count)]
            if dim > 0:
                values = pa.Array.from_buffers(element, count * dim, [None, pa.py_buffer(frame["data"])])
                embedding = pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(bad, pa.bool_()))
            else:
                embedding = pa.nulls(count, vector)
            messages = [errors[start + i].get("message") if start + i in errors else None for i in range(count)]
            batch = [
                pa.array(range(start, start + count), pa.int64()),
                pa.array(frame.get("ids") or [None] * count, pa.string()),
                embedding,
                pa.array(messages, pa.string()),
            ]
            if windows:
                batch.append(pa.array([_windows_row(row, kind) for row in frame["windows"]],
                                      schema.field("windows").type))
            writer.write_batch(pa.record_batch(batch, schema=schema))
    return failed
