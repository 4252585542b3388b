"""OpenAI Files: uploads streamed into the job store, and the output/error files of batches.

An upload's multipart body is parsed as it arrives (werkzeug's sansio MultipartDecoder over the
request stream, never spooled to a temporary file or held whole in memory) and written block by
block to the job store under `files/<file id>` (`Store.writer`: S3 multipart or temp + rename).
Lines are checked on the way: purpose `batch` files must be JSONL objects (a bad line refuses the
upload); purpose `user_data` files (`.jsonl` or `.txt`, told by the file name's suffix) only have
their non-blank lines counted: a line that is not a text fails alone later, as a per-item error
of the job that uses the file. The Redis record is written only after the object is whole, so a
refused upload leaves nothing. Expiry: the record has a TTL, and the object is listed in
`redis_keys.files_expiry()` for the sweeper (embedserve/jobs/sweeper.py).

Output and error files of a batch are records that point at its job: their content is generated
from the job's chunk outputs when fetched (see api/bulk/batch_output.py), so vectors are stored once,
as float32, and never again as JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO

import redis
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from embedserve import defaults, redis_keys
from embedserve.errors import InvalidRequest, NotFound
from embedserve.ids import new_id
from embedserve.jobs.store import Store
from embedserve.settings import Settings

FILE_PREFIX = "file-"
UPLOAD_PURPOSES = ("batch", "user_data")
# Suffixes of user_data files: JSONL (a JSON string or {"text", "id"} per line) or plain text.
USER_DATA_SUFFIXES = (".jsonl", ".txt")
# OpenAI's purposes for files the service writes itself.
OUTPUT_PURPOSE = "batch_output"
# Bytes read from the request body at a time.
READ_BLOCK_BYTES = 64 * 1024
# Most bytes a non-file form field (purpose) may have.
MAX_FIELD_BYTES = 64 * 1024


def content_key(file_id: str) -> str:
    """Where an uploaded file's bytes live in the job store."""
    return f"files/{file_id}"


def user_data_kind(filename: str) -> str:
    """'jsonl' or 'txt' from a user_data file's name; 400 for anything else."""
    lower = (filename or "").lower()
    for suffix in USER_DATA_SUFFIXES:
        if lower.endswith(suffix):
            return suffix[1:]
    raise InvalidRequest(f"A user_data file must be named *.jsonl (one JSON string or {{\"text\": ..., \"id\": ...}} "
                         f"object per line) or *.txt (one text per line); got {filename!r}.", param="file",
                         code="invalid_file_type")


def _check_purpose(purpose: str | None, filename: str) -> None:
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(f"'purpose' must be 'batch' or 'user_data', got {purpose!r}.", param="purpose")
    if purpose == "user_data":
        user_data_kind(filename)


class _LineCounter:
    """Splits incoming blocks into lines; checks batch lines, counts non-blank ones."""

    def __init__(self, purpose: str):
        self.purpose = purpose
        self.lines = 0
        self.number = 0
        self._rest = b""

    def feed(self, block: bytes) -> None:
        parts = (self._rest + block).split(b"\n")
        self._rest = parts.pop()
        for line in parts:
            self._line(line)

    def end(self) -> None:
        if self._rest:
            self._line(self._rest)
            self._rest = b""

    def _line(self, line: bytes) -> None:
        self.number += 1
        if self.purpose == "batch":
            _check_line(line, self.number)
        self.lines += bool(line.strip())


def receive_upload(client: redis.Redis, store: Store, settings: Settings, owner: str, stream: IO[bytes],
                   content_type: str | None) -> dict:
    """Parse a multipart/form-data upload as it streams in, storing its 'file' part; returns the record."""
    mime, options = parse_options_header(content_type or "")
    boundary = options.get("boundary")
    if mime != "multipart/form-data" or not boundary:
        raise InvalidRequest("Upload files as multipart/form-data with fields 'file' and 'purpose'.", param="file")
    file_id = new_id(FILE_PREFIX)
    key = content_key(file_id)
    fields: dict[str, str] = {}
    field_buf: list[bytes] = []
    current: Field | File | None = None
    filename, checker, sink, size, stored = None, None, None, 0, False
    with ExitStack() as stack:
        try:
            for event in _multipart_events(stream, boundary.encode()):
                if isinstance(event, Field):
                    current, field_buf = event, []
                elif isinstance(event, File):
                    current = event
                    if event.name != "file":
                        continue
                    if filename is not None:
                        raise InvalidRequest("Send one 'file' per upload.", param="file")
                    filename = event.filename or ""
                    purpose = fields.get("purpose")
                    if purpose is not None:  # the usual order (curl -F, requests, httpx, the OpenAI SDK)
                        _check_purpose(purpose, filename)
                        checker = _LineCounter(purpose)
                    sink = stack.enter_context(store.writer(key))
                elif isinstance(event, Data):
                    if isinstance(current, Field):
                        field_buf.append(event.data)
                        if sum(map(len, field_buf)) > MAX_FIELD_BYTES:
                            raise InvalidRequest(f"Form field {current.name!r} is too long.", param=current.name)
                        if not event.more_data:
                            fields[current.name] = b"".join(field_buf).decode("utf-8", "replace")
                    elif isinstance(current, File) and current.name == "file" and sink is not None:
                        size += len(event.data)
                        if size > settings.max_file_bytes:
                            raise InvalidRequest(f"The file is larger than {settings.max_file_bytes} bytes "
                                                 f"(EMBED_MAX_FILE_BYTES).", param="file", code="file_too_large")
                        if checker is not None:
                            checker.feed(event.data)
                        if event.data:
                            sink.write(event.data)
                        if not event.more_data and checker is not None:
                            checker.end()
            if filename is None:
                raise InvalidRequest("Missing required parameter: 'file'.", param="file")
            stack.close()  # the object is whole from here on
            stored = True
            purpose = fields.get("purpose")
            if checker is None:  # 'purpose' came after the file: check the stored copy now
                _check_purpose(purpose, filename)
                checker = _LineCounter(purpose)
                for block in uploaded_content(store, file_id):
                    checker.feed(block)
                checker.end()
            if not checker.lines:
                raise InvalidRequest("The file is empty; it needs at least one non-blank line.",
                                     param="file", code="empty_file")
            return _save_record(client, settings, owner, file_id, filename, purpose, size, checker.lines)
        except BaseException:
            if stored:
                store.delete(key)
            raise


def _multipart_events(stream: IO[bytes], boundary: bytes) -> Iterator:
    # No form-memory limit here: werkzeug applies it to the decoder's buffer plus every read, file
    # data included, so any upload past it failed; the form fields are capped by MAX_FIELD_BYTES below.
    decoder = MultipartDecoder(boundary, max_form_memory_size=None, max_parts=16)
    while True:
        data = stream.read(READ_BLOCK_BYTES)
        try:
            decoder.receive_data(data or None)
            event = decoder.next_event()
            while not isinstance(event, (Epilogue, NeedData)):
                yield event
                event = decoder.next_event()
        except ValueError as exc:  # a body cut short or not multipart at all
            raise InvalidRequest(f"The multipart body is malformed ({exc}).", param="file") from None
        if not data or isinstance(event, Epilogue):
            return


def _save_record(client: redis.Redis, settings: Settings, owner: str, file_id: str, filename: str, purpose: str,
                 size: int, lines: int) -> dict:
    now = int(time.time())
    record = {"id": file_id, "owner": owner, "filename": filename or "upload.jsonl", "purpose": purpose,
              "bytes": size, "lines": lines, "created_at": now, "expires_at": now + settings.file_ttl,
              "status": "processed"}
    pipe = client.pipeline(transaction=True)
    pipe.hset(redis_keys.file(file_id), mapping=record)
    pipe.expire(redis_keys.file(file_id), settings.file_ttl)
    pipe.zadd(redis_keys.files_expiry(), {file_id: record["expires_at"]})
    pipe.zadd(redis_keys.owned(owner, "files"), {file_id: time.time()})
    pipe.expire(redis_keys.owned(owner, "files"), max(settings.file_ttl, settings.job_ttl + defaults.BATCH_WINDOW_S))
    pipe.execute()
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


def output_record_steps(pipe: redis.client.Pipeline, file_id: str, owner: str, job_id: str, batch_id: str,
                        role: str, expires_at: int) -> None:
    """Add to `pipe` the record of a batch's output or error file. It is made with the batch (the
    one state change), and shown only once the batch's job has ended with lines for that role
    (api/bulk/batch_output.py `roles`); a deleted output file is gone for good."""
    key = redis_keys.file(file_id)
    now = int(time.time())
    record = {"id": file_id, "owner": owner, "filename": f"{batch_id}_{role}.jsonl", "purpose": OUTPUT_PURPOSE,
              "bytes": -1, "created_at": now, "expires_at": expires_at, "status": "processed",
              "job_id": job_id, "batch_id": batch_id, "role": role}
    pipe.hset(key, mapping=record)
    pipe.expireat(key, max(expires_at, now + 60))
    pipe.zadd(redis_keys.owned(owner, "files"), {file_id: time.time()})


def find_file(client: redis.Redis, file_id: str, owner: str) -> dict:
    """The caller's file record, or the same 404 for unknown, expired and someone else's."""
    raw = client.hgetall(redis_keys.file(file_id)) if file_id.startswith(FILE_PREFIX) else {}
    record = {k.decode(): v.decode() for k, v in raw.items()}
    if not record or record.get("owner") != owner:
        raise NotFound(f"No file with id '{file_id}'.", param="file_id")
    return record


def find_input_file(client: redis.Redis, file_id: str, owner: str, purpose: str) -> dict:
    """The caller's uploaded file a batch or a job reads (`input_file_id`): 404 as `find_file`, 400 unless
    it was uploaded with the `purpose` that use needs ('batch' or 'user_data')."""
    record = find_file(client, file_id, owner)
    if record["purpose"] != purpose:
        raise InvalidRequest(f"File '{file_id}' has purpose {record['purpose']!r}; {_READERS[purpose]} needs a file "
                             f"uploaded with purpose {purpose!r}.", param="input_file_id")
    return record


_READERS = {"batch": "a batch", "user_data": "a job"}


def file_object(record: dict) -> dict:
    """The OpenAI File object."""
    return {"id": record["id"], "object": "file", "bytes": int(record["bytes"]),
            "created_at": int(record["created_at"]), "expires_at": int(record["expires_at"]),
            "filename": record["filename"], "purpose": record["purpose"], "status": record["status"],
            "status_details": None}


def uploaded_content(store: Store, file_id: str) -> Iterator[bytes]:
    """An uploaded file's bytes, a block at a time, streamed from the job store (nothing when gone)."""
    blocks = store.blocks(content_key(file_id), defaults.FILE_BLOCK_BYTES)
    try:
        first = next(blocks)
    except (KeyError, StopIteration):  # gone (or empty)
        return
    yield first
    yield from blocks


def uploaded_lines(store: Store, file_id: str) -> Iterator[bytes]:
    """An uploaded file's lines, read from the job store a block at a time."""
    rest = b""
    for block in uploaded_content(store, file_id):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def user_data_inputs(store: Store, record: dict) -> Iterator[tuple[str | None, str | None, dict | None]]:
    """(text, id, error) per non-blank line of a user_data file, in order; error (an OpenAI error
    object) when the line is not a text, which then fails alone."""
    kind = user_data_kind(record["filename"])
    first = True
    for line in uploaded_lines(store, record["id"]):
        if first:
            line, first = line.removeprefix(b"\xef\xbb\xbf"), False  # a UTF-8 BOM, as `embedserve embed` reads
        if not line.strip():
            continue
        yield _user_data_line(line, kind)


def _bad(message: str) -> tuple[None, None, dict]:
    return None, None, InvalidRequest(message, param="input", code="invalid_input").to_payload()


def _user_data_line(line: bytes, kind: str) -> tuple[str | None, str | None, dict | None]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _bad(f"This line is not UTF-8 text ({exc.reason} at byte {exc.start}).")
    if kind == "txt":
        return text.rstrip("\r\n"), None, None
    try:
        value = json.loads(text)
    except ValueError:
        return _bad("This line is not valid JSON; a .jsonl line is a JSON string or an object "
                    "{\"text\": ..., \"id\": ...}.")
    item_id = None
    if isinstance(value, dict):
        item_id = value.get("id")
        if item_id is not None and not isinstance(item_id, str):
            return _bad("'id' must be a string.")
        value = value.get("text")
    if not isinstance(value, str) or not value:
        return None, item_id, _bad("This line has no text: expected a non-empty JSON string or an object "
                                   "with a non-empty string 'text'.")[2]
    for part in (value, item_id or ""):
        try:
            part.encode("utf-8")
        except UnicodeEncodeError:
            return None, item_id if part is value else None, _bad("This line contains an unpaired surrogate "
                                                                  "(invalid Unicode).")[2]
    return value, item_id, None


def delete_file(client: redis.Redis, store: Store, record: dict) -> None:
    """Drop a file's record and stored content (a batch's output file: only the record)."""
    client.unlink(redis_keys.file(record["id"]), redis_keys.file_content(record["id"]))
    client.zrem(redis_keys.owned(record["owner"], "files"), record["id"])
    if "job_id" not in record:
        store.delete(content_key(record["id"]))
        client.zrem(redis_keys.files_expiry(), record["id"])
