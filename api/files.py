"""OpenAI Files for batches: JSONL uploads stored in Redis, and the output/error files of batches.

An upload is checked line by line as it is copied into Redis in blocks (never held whole in
memory); the file record is written only after the content, so a refused upload leaves
nothing. Output and error files of a batch are records that point at its job: their content
is generated from the job's chunk outputs when fetched (see api/batch_output.py), so vectors
are stored once, as float32, and never again as JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import IO

import redis

from embedserve import defaults, keys
from embedserve.errors import InvalidRequest, NotFound
from embedserve.jobs import new_id
from embedserve.settings import Settings

FILE_PREFIX = "file-"
UPLOAD_PURPOSES = ("batch",)
# OpenAI's purposes for files the service writes itself.
OUTPUT_PURPOSE = "batch_output"


def store_upload(client: redis.Redis, settings: Settings, owner: str, stream: IO[bytes], filename: str,
                 purpose: str | None) -> dict:
    """Check and store an uploaded JSONL file; returns its record."""
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(f"'purpose' must be 'batch' (the only purpose this service uses), got {purpose!r}.",
                             param="purpose")
    file_id = new_id(FILE_PREFIX)
    content_key = keys.file_content(file_id)
    size, lines, pending, buffer = 0, 0, 0, []
    try:
        for number, line in enumerate(stream, start=1):
            _check_line(line, number)
            lines += bool(line.strip())
            buffer.append(line)
            size += len(line)
            pending += len(line)
            if size > settings.max_file_bytes:
                raise InvalidRequest(f"The file is larger than {settings.max_file_bytes} bytes (EMBED_MAX_FILE_BYTES).",
                                     param="file", code="file_too_large")
            if pending >= defaults.FILE_BLOCK_BYTES:
                client.append(content_key, b"".join(buffer))
                buffer, pending = [], 0
        if not lines:
            raise InvalidRequest("The file is empty; a batch input file has one JSON request per line.",
                                 param="file", code="empty_file")
        if buffer:
            client.append(content_key, b"".join(buffer))
        now = int(time.time())
        record = {"id": file_id, "owner": owner, "filename": filename or "upload.jsonl", "purpose": purpose,
                  "bytes": size, "created_at": now, "expires_at": now + settings.file_ttl, "status": "processed"}
        pipe = client.pipeline(transaction=True)
        pipe.expire(content_key, settings.file_ttl)
        pipe.hset(keys.file(file_id), mapping=record)
        pipe.expire(keys.file(file_id), settings.file_ttl)
        pipe.zadd(keys.owned(owner, "files"), {file_id: time.time()})
        pipe.expire(keys.owned(owner, "files"), max(settings.file_ttl, settings.job_ttl + defaults.BATCH_WINDOW_S))
        pipe.execute()
    except BaseException:
        client.unlink(content_key)
        raise
    return record


def _check_line(line: bytes, number: int) -> None:
    if not line.strip():
        return
    try:
        value = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(f"Line {number} of the file is not valid JSON; a batch input file is JSONL "
                             f"(one JSON object per line).", param="file", code="invalid_jsonl") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"Line {number} of the file is not a JSON object.", param="file", code="invalid_jsonl")


def create_output_record(client: redis.Redis, file_id: str, owner: str, job_id: str, batch_id: str, role: str,
                         expires_at: int) -> None:
    """Make the record of a batch's output or error file once (later calls change nothing)."""
    key = keys.file(file_id)
    if client.exists(key):
        return
    now = int(time.time())
    record = {"id": file_id, "owner": owner, "filename": f"{batch_id}_{role}.jsonl", "purpose": OUTPUT_PURPOSE,
              "bytes": -1, "created_at": now, "expires_at": expires_at, "status": "processed",
              "job_id": job_id, "batch_id": batch_id, "role": role}
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping=record)
    pipe.expireat(key, max(expires_at, now + 60))
    pipe.zadd(keys.owned(owner, "files"), {file_id: time.time()})
    pipe.execute()


def find_file(client: redis.Redis, file_id: str, owner: str) -> dict:
    """The caller's file record, or the same 404 for unknown, expired and someone else's."""
    raw = client.hgetall(keys.file(file_id)) if file_id.startswith(FILE_PREFIX) else {}
    record = {k.decode(): v.decode() for k, v in raw.items()}
    if not record or record.get("owner") != owner:
        raise NotFound(f"No file with id '{file_id}'.", param="file_id")
    return record


def file_object(record: dict) -> dict:
    """The OpenAI File object."""
    return {"id": record["id"], "object": "file", "bytes": int(record["bytes"]),
            "created_at": int(record["created_at"]), "expires_at": int(record["expires_at"]),
            "filename": record["filename"], "purpose": record["purpose"], "status": record["status"],
            "status_details": None}


def uploaded_content(client: redis.Redis, file_id: str) -> Iterator[bytes]:
    """An uploaded file's bytes, a block at a time."""
    key = keys.file_content(file_id)
    offset = 0
    while True:
        block = client.getrange(key, offset, offset + defaults.FILE_BLOCK_BYTES - 1)
        if not block:
            return
        yield block
        offset += len(block)


def uploaded_lines(client: redis.Redis, file_id: str) -> Iterator[bytes]:
    """An uploaded file's lines, read from Redis a block at a time."""
    rest = b""
    for block in uploaded_content(client, file_id):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def delete_file(client: redis.Redis, record: dict) -> None:
    """Drop a file's record and content (a batch's output file: only the record)."""
    client.unlink(keys.file(record["id"]), keys.file_content(record["id"]))
    client.zrem(keys.owned(record["owner"], "files"), record["id"])
