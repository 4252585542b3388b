"""Stream a finished job's result chunk by chunk from Redis: JSON list, ndjson or msgpack.

Each generator holds one chunk's output at a time, so a million-vector result costs the API
one chunk of memory, not the whole matrix.
"""

from __future__ import annotations

import array
import base64
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import msgpack

from embedserve.errors import InvalidRequest, NotAcceptable
from embedserve.jobs import Job, JobStatus, JobStore
from embedserve.protocol import floats

JSON = "application/json"
NDJSON = "application/x-ndjson"
MSGPACK = "application/msgpack"
FORMATS = (JSON, NDJSON, MSGPACK)


def pick_format(accept_header: str | None, accept_mimetypes) -> str:
    """The result format for an Accept header; JSON when absent or `*/*`."""
    if not accept_header or not accept_header.strip():
        return JSON
    best = accept_mimetypes.best_match([JSON, NDJSON, MSGPACK, "application/x-msgpack"])
    if best is None:
        raise NotAcceptable(f"Cannot produce {accept_header!r}; results come as {', '.join(FORMATS)}.")
    return MSGPACK if best == "application/x-msgpack" else best


@dataclass
class Item:
    """One input's outcome."""

    index: int
    vector: bytes | None
    tokens: int
    error: dict | None


def items(store: JobStore, job: Job) -> Iterator[Item]:
    """Every input of a native job in order, reading one chunk at a time."""
    for chunk in range(job.chunks):
        output = store.output(job.id, chunk)
        if output is None:  # never ran: the job was cancelled or expired first
            spec = store.spec(job.id, chunk)
            indices = spec.items if spec is not None else []
            for index in indices:
                yield Item(index, None, 0, not_processed(job))
            continue
        width = output.dim * 4
        offset = 0
        for index, rows, tokens, err in zip(output.items, output.rows, output.tokens, output.errors):
            if err is not None:
                yield Item(index, None, 0, err["error"])
                continue
            yield Item(index, output.vectors[offset:offset + width], tokens, None)
            offset += width * rows


def not_processed(job: Job) -> dict:
    """The error of an input whose chunk never ran."""
    why = "expired before it ran" if job.status == JobStatus.EXPIRED else "was cancelled before it ran"
    return {"message": f"This input was not processed: the job {why}.", "type": "invalid_request_error",
            "param": None, "code": "cancelled" if job.status != JobStatus.EXPIRED else "expired"}


def _encode(job: Job):
    if job.encoding_format == "base64":
        return lambda row: base64.b64encode(row).decode("ascii")
    return floats


def json_list(store: JobStore, job: Job) -> Iterator[bytes]:
    """OpenAI's embeddings list; an input that failed appears with `embedding: null` and its `error`."""
    encode = _encode(job)
    yield b'{"object":"list","data":['
    tokens, first = 0, True
    for item in items(store, job):
        entry = {"object": "embedding", "index": item.index}
        if item.error is None:
            entry["embedding"] = encode(item.vector)
        else:
            entry.update(embedding=None, error=item.error)
        tokens += item.tokens
        yield (b"" if first else b",") + json.dumps(entry).encode()
        first = False
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    yield f'],"model":{json.dumps(job.model)},"usage":{json.dumps(usage)}}}'.encode()


def ndjson(store: JobStore, job: Job) -> Iterator[bytes]:
    """One JSON line per input: {"index", "embedding"} or {"index", "error"}."""
    encode = _encode(job)
    for item in items(store, job):
        line = {"index": item.index, "embedding": encode(item.vector)} if item.error is None else \
            {"index": item.index, "error": item.error}
        yield json.dumps(line).encode() + b"\n"


def msgpack_matrix(store: JobStore, job: Job) -> Iterator[bytes]:
    """A msgpack map: model, shape, dtype, data (float32 LE matrix bytes; failed rows NaN), errors, usage."""
    dim = job.dim
    nan_row = _nan_row(dim)
    packer = msgpack.Packer(use_bin_type=True)
    yield packer.pack_map_header(6)
    yield packer.pack("model") + packer.pack(job.model)
    yield packer.pack("shape") + packer.pack([job.total, dim])
    yield packer.pack("dtype") + packer.pack("<f4")
    yield packer.pack("data") + _bin_header(job.total * dim * 4)
    errors, tokens = [], 0
    for item in items(store, job):
        tokens += item.tokens
        if item.error is None:
            yield item.vector
        else:
            errors.append({"index": item.index, "error": item.error})
            yield nan_row
    yield packer.pack("errors") + packer.pack(errors)
    yield packer.pack("usage") + packer.pack({"prompt_tokens": tokens, "total_tokens": tokens})


def _bin_header(length: int) -> bytes:
    """msgpack bin32 header: the matrix is written after it in pieces."""
    if length >= 2**32:
        raise InvalidRequest("This result is over 4 GiB, more than one msgpack binary can hold; "
                             "fetch it as application/x-ndjson.")
    return b"\xc6" + length.to_bytes(4, "big")


def _nan_row(dim: int) -> bytes:
    row = array.array("f", [math.nan] * dim)
    if row.itemsize != 4:
        raise RuntimeError("this platform's C float is not 32-bit")
    if sys.byteorder == "big":
        row.byteswap()
    return row.tobytes()


STREAMS = {JSON: json_list, NDJSON: ndjson, MSGPACK: msgpack_matrix}
