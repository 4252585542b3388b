"""Stream a finished job's result from the job store: JSON list, ndjson, msgpack, a msgpack stream, Parquet.

A compacted job is read from its Parquet files one record batch at a time; a job that stopped
early (cancelled, expired) from its per-chunk parts, one part at a time. Either way a
million-vector result costs the API one piece of memory, not the whole matrix.

`application/msgpack` is one map whose matrix is a single msgpack binary, so it holds at most
4 GiB (2**32 - 1 bytes); a bigger result is refused with 406 before anything is sent. The framed
stream `application/vnd.embedserve.msgpack-stream` has no size limit: a sequence of msgpack
maps, read one after another (e.g. msgpack.Unpacker):

    {"model", "dim", "dtype", "embedding_type", "total"}               the header, first
    {"start", "count", "data", "errors", "ids"?, "windows"?}           one per block of rows, in order
    {"usage": {"prompt_tokens", "total_tokens"}}                       the trailer, last

A block holds rows start .. start+count-1: `data` is count rows of `dtype` ("<f4": dim
little-endian float32, a failed row NaN; for a job that asked for another embedding_type "|i1" or
"|u1", one byte per dimension or per 8 for the bit types, a failed row zeros), at most PART_BYTES of them (EMBED_RESULT_PART_BYTES) unless one row is
bigger; `errors` lists its failed rows as {index, error}; `ids` (present when some row of the
block has the caller's id) one id or null per row; `windows` (a job that asked for `long_input: windows`)
one entry per row, null for a failed one, else its windows `[{"embedding", "text_start", "text_end",
"tokens"}]`, each `embedding` a binary like a row of `data`. A stream that ends without the trailer was cut.

`application/vnd.apache.parquet` is the result as one Parquet file, columns as in
embedserve/jobs/results.py (index, id, embedding, error, tokens): a compacted job's single file
is sent as stored; several files, or a job that stopped early, are rewritten as one stream, a
row group at a time.
"""

from __future__ import annotations

import array
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator

import msgpack
import orjson

from api import memory
from api.bulk import result_json
from embedserve import defaults
from embedserve.errors import Gone, NotAcceptable
from embedserve.jobs import results as result_files
from embedserve.jobs.chunks import ChunkOutput
from embedserve.jobs.data import JobData, job_prefix
from embedserve.jobs.records import Job, JobStatus
from embedserve.jobs.repeats import RepeatFiller
from embedserve.vector_types import FLOAT, vector_type

JSON = "application/json"
NDJSON = "application/x-ndjson"
MSGPACK = "application/msgpack"
MSGPACK_STREAM = "application/vnd.embedserve.msgpack-stream"
PARQUET = "application/vnd.apache.parquet"
FORMATS = (JSON, NDJSON, MSGPACK, MSGPACK_STREAM, PARQUET)

# Most matrix bytes in one block of the msgpack stream (a tuning knob: EMBED_RESULT_PART_BYTES).
PART_BYTES = 8 * 1024 * 1024
# The most matrix bytes one msgpack binary (bin32) holds: a bigger result cannot be application/msgpack.
# EMBED_RESULT_MSGPACK_MAX_BYTES may set a lower limit (tests do); never a higher one.
MSGPACK_MAX_BYTES = 2**32 - 1


def _env_bytes(name: str, default: int, low: int, high: int) -> int:
    """An integer setting read from the environment when a result is asked for (bad values: the default)."""
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return min(max(value, low), high)


def part_bytes() -> int:
    return _env_bytes("EMBED_RESULT_PART_BYTES", PART_BYTES, 1, 2**31)


def msgpack_max_bytes() -> int:
    return _env_bytes("EMBED_RESULT_MSGPACK_MAX_BYTES", MSGPACK_MAX_BYTES, 0, MSGPACK_MAX_BYTES)


def pick_format(accept_header: str | None, accept_mimetypes) -> str:
    """The result format for an Accept header; JSON when absent or `*/*`."""
    if not accept_header or not accept_header.strip():
        return JSON
    best = accept_mimetypes.best_match([JSON, NDJSON, MSGPACK, "application/x-msgpack", MSGPACK_STREAM, PARQUET])
    if best is None:
        raise NotAcceptable(f"Cannot produce {accept_header!r}; results come as {', '.join(FORMATS)}.")
    return MSGPACK if best == "application/x-msgpack" else best


# The error code of a result asked for after the job's data expired.
JOB_EXPIRED = "job_expired"


def check_available(data: JobData, job: Job) -> None:
    """410 job_expired before any byte is sent when the job's data is gone from the store (the sweeper
    deletes it EMBED_JOB_TTL after submission, before it marks the record expired). A 200 cannot be
    taken back, and rows skipped for missing data would pass for a whole result. A job that ended
    `expired` while its data is still there (its window passed before it ran) is a result: each
    input says it expired."""
    if job.compacted:
        gone = result_files.read_manifest(data.store, job_prefix(job.id)) is None
    else:
        gone = job.chunks > 0 and data.spec(job.id, 0) is None
    if gone:
        raise Gone(f"The data of job {job.id} expired (EMBED_JOB_TTL after it was submitted) and was deleted; "
                   "submit the inputs again.", code=JOB_EXPIRED)


def check_fits(job: Job, fmt: str) -> None:
    """406 before any byte is sent when `fmt` cannot hold the job's result (msgpack's 4 GiB binary)."""
    if fmt != MSGPACK:
        return
    size = job.total * vector_type(job.embedding_type).row_bytes(job.dim)
    if size > msgpack_max_bytes():
        raise NotAcceptable(f"This result is {size} bytes of vectors, more than one msgpack binary holds "
                            f"({msgpack_max_bytes()} bytes); fetch it with Accept: {MSGPACK_STREAM} (a framed "
                            f"msgpack stream, no size limit), {NDJSON} or {PARQUET}.")


def chunk_outputs(data: JobData, job: Job) -> Iterator[ChunkOutput]:
    """The job's outputs in input order: Parquet batches once compacted, else per-chunk parts."""
    if job.compacted:
        for batch in result_files.iter_result_batches(data.store, job_prefix(job.id)):
            yield result_files.to_chunk_output(batch)
        return

    def part(chunk: int, output: ChunkOutput | None = None) -> ChunkOutput:
        output = output if output is not None else data.output(job.id, chunk)
        if output is None:  # never ran: the job was cancelled or expired first
            spec = data.spec(job.id, chunk)
            indices = spec.items if spec is not None else []
            error = {"status": 400, "error": not_processed(job)}
            output = ChunkOutput(items=indices, rows=[0] * len(indices), tokens=[0] * len(indices), dim=0,
                                 vectors=b"", errors=[error] * len(indices), ids=spec.ids if spec else None)
        return output

    # A stopped job is not compacted, so its repeats' rows are still placeholders here: filled from their
    # first occurrence as compaction would, or failed with it (not_processed when its chunk never ran).
    yield from RepeatFiller(part).filled((chunk, part(chunk, output))
                                         for chunk, output in data.outputs(job.id, job.chunks))


def not_processed(job: Job) -> dict:
    """The error of an input whose chunk never ran."""
    why = "expired before it ran" if job.status == JobStatus.EXPIRED else "was cancelled before it ran"
    return {"message": f"This input was not processed: the job {why}.", "type": "invalid_request_error",
            "param": None, "code": "cancelled" if job.status != JobStatus.EXPIRED else "expired"}


def json_list(data: JobData, job: Job) -> Iterator[bytes]:
    """OpenAI's embeddings list; an input that failed appears with `embedding: null` and its `error`."""
    kind = vector_type(job.embedding_type)
    yield b'{"object":"list","data":['
    tokens, first = 0, True
    for output in chunk_outputs(data, job):
        tokens += _tokens(output)
        for piece in result_json.entries(output, kind, job.encoding_format, result_json.LIST_ENTRY):
            if piece:
                yield (b"" if first else b",") + b",".join(piece)
                first = False
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    yield b'],"model":' + orjson.dumps(job.model) + b',"usage":' + orjson.dumps(usage) + b"}"


def ndjson(data: JobData, job: Job) -> Iterator[bytes]:
    """One JSON line per input: {"index", "embedding"} or {"index", "error"}."""
    kind = vector_type(job.embedding_type)
    for output in chunk_outputs(data, job):
        for piece in result_json.entries(output, kind, job.encoding_format, result_json.NDJSON_ENTRY):
            if piece:
                yield b"\n".join(piece) + b"\n"


def _tokens(output: ChunkOutput) -> int:
    """Tokens of the output's inputs that succeeded (a failed input counts none)."""
    if output.errors.count(None) == len(output.errors):  # the usual output: no row to leave out
        return sum(output.tokens)
    return sum(tokens for tokens, error in zip(output.tokens, output.errors) if error is None)


def _runs(output: ChunkOutput) -> Iterator[tuple[int, int, int]]:
    """(first row, rows, offset in output.vectors) of each run of succeeded rows, in order, and
    (row, 0, -1) for each failed row between them: a matrix is copied a run at a time, not a row."""
    width, first, offset = output.row_width, 0, 0
    failed = [row for row, error in enumerate(output.errors) if error is not None]
    for stop in [*failed, len(output.items)]:
        if stop > first:
            yield first, stop - first, offset
            offset += (stop - first) * width
        if stop < len(output.items):
            yield stop, 0, -1
        first = stop + 1


def msgpack_matrix(data: JobData, job: Job) -> Iterator[bytes]:
    """A msgpack map: model, shape, dtype, data (the matrix's bytes: float32 LE, failed rows NaN; or the
    job's embedding_type, failed rows zeros), errors, usage, embedding_type; and for a job that asked for
    `long_input: windows`, windows: per row null (failed) or its windows, as the stream's blocks hold them."""
    kind = vector_type(job.embedding_type)
    nan_row = _failed_row(job)
    packer = msgpack.Packer(use_bin_type=True)
    windows = [] if job.long_input == "windows" else None
    yield packer.pack_map_header(7 if windows is None else 8)
    yield packer.pack("model") + packer.pack(job.model)
    yield packer.pack("shape") + packer.pack([job.total, kind.values(job.dim)])
    yield packer.pack("dtype") + packer.pack(kind.dtype)
    yield packer.pack("embedding_type") + packer.pack(kind.name)
    yield packer.pack("data") + _bin_header(job.total * kind.row_bytes(job.dim))
    errors, tokens = [], 0
    for output in chunk_outputs(data, job):
        tokens += _tokens(output)
        width = output.row_width
        for first, rows, offset in _runs(output):
            if rows:
                yield output.vectors[offset:offset + rows * width]
            else:
                errors.append({"index": output.items[first], "error": output.errors[first]["error"]})
                yield nan_row
            if windows is not None:
                windows.extend(_windows_of(output, rows, offset) if rows else [None])
    yield packer.pack("errors") + packer.pack(errors)
    if windows is not None:
        yield packer.pack("windows") + packer.pack(windows)
    yield packer.pack("usage") + packer.pack({"prompt_tokens": tokens, "total_tokens": tokens})


def _windows_of(output: ChunkOutput, rows: int, offset: int) -> list:
    """The windows of a run of `rows` succeeded rows starting `offset` bytes into output.vectors."""
    first = offset // output.row_width if output.row_width else 0
    found = [[{"embedding": w["embedding"], "text_start": w["text_start"], "text_end": w["text_end"],
               "tokens": w["tokens"]} for w in row] for row in (output.windows or [])[first:first + rows]]
    # A worker from before long inputs answered without windows: one (empty) list per row all the same.
    return found + [[] for _ in range(rows - len(found))]


def _bin_header(length: int, smallest: bool = False) -> bytes:
    """A msgpack binary's header, its bytes written after it in pieces: bin32, or (`smallest`) the
    smallest that holds `length`, as msgpack.Packer writes it (check_fits refused bigger ones)."""
    if length >= 2**32:  # not reached: the route calls check_fits before the first byte
        raise ValueError(f"a msgpack binary holds at most 2**32 - 1 bytes, not {length}")
    if smallest and length < 2**8:
        return b"\xc4" + length.to_bytes(1, "big")
    if smallest and length < 2**16:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


def _failed_row(job: Job) -> bytes:
    """What stands for a failed input's row in a matrix: NaNs for float, zeros for the quantized types."""
    if job.embedding_type != FLOAT:
        return bytes(vector_type(job.embedding_type).row_bytes(job.dim))
    row = array.array("f", [math.nan] * job.dim)
    if row.itemsize != 4:
        raise RuntimeError("this platform's C float is not 32-bit")
    if sys.byteorder == "big":
        row.byteswap()
    return row.tobytes()


# What an error takes in a block of the msgpack stream, counted against the part size like matrix bytes.
ERROR_WEIGHT = 256


def msgpack_stream(data: JobData, job: Job) -> Iterator[bytes]:
    """The framed msgpack stream: header, blocks of at most part_bytes() of matrix, trailer (module doc)."""
    kind = vector_type(job.embedding_type)
    packer = msgpack.Packer(use_bin_type=True)
    yield packer.pack({"model": job.model, "dim": job.dim, "dtype": kind.dtype, "embedding_type": kind.name,
                       "total": job.total})
    tokens = 0
    block = _Block(kind.row_bytes(job.dim), part_bytes(), _failed_row(job), job.long_input == "windows")
    for output in chunk_outputs(data, job):
        tokens += _tokens(output)
        for frame in block.add(output):
            yield from frame
    if block.count:
        yield from block.frame()
    yield packer.pack({"usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


class _Block:
    """The stream's block being filled: rows go in a run at a time; a block is full when after a row
    `weight + max(width, 1) > limit` (weight: width per row, ERROR_WEIGHT more per failed one)."""

    def __init__(self, width: int, limit: int, failed_row: bytes, windows: bool = False):
        self.width, self.limit, self.failed_row = width, limit, failed_row
        self.windows: list | None = [] if windows else None
        self.start, self.count, self.weight = 0, 0, 0
        self.pieces: list = []
        self.errors: list = []
        self.ids: list = []

    def add(self, output: ChunkOutput) -> Iterator[list[bytes]]:
        """Take in the output's rows; yields each block that fills, as frame() does."""
        ids = output.ids or [None] * len(output.items)
        for first, rows, offset in _runs(output):
            if not rows:  # a failed row
                self._open(output.items[first])
                self.pieces.append(self.failed_row)
                self.errors.append({"index": output.items[first], "error": output.errors[first]["error"]})
                self.ids.append(ids[first])
                if self.windows is not None:
                    self.windows.append(None)
                self.count += 1
                self.weight += self.width + ERROR_WEIGHT
                if self._full():
                    yield self.frame()
                continue
            while rows:
                take = min(rows, self._room())
                self._open(output.items[first])
                self.pieces.append(output.vectors[offset:offset + take * self.width])
                self.ids += ids[first:first + take]
                if self.windows is not None:
                    self.windows += _windows_of(output, take, offset)
                self.count += take
                self.weight += take * self.width
                first, rows, offset = first + take, rows - take, offset + take * self.width
                if self._full():
                    yield self.frame()

    def _open(self, index: int) -> None:
        if not self.count:
            self.start = index

    def _room(self) -> int:
        """Succeeded rows that go in before this block is full (at least one)."""
        if self.width == 0:
            return 1
        return max(1, (self.limit - self.width - self.weight) // self.width + 1)

    def _full(self) -> bool:
        return self.weight + max(self.width, 1) > self.limit

    def frame(self) -> list[bytes]:
        """The block as a stream frame, in pieces: the map {start, count, data, errors, ids?} as msgpack
        packs it, with the matrix's runs sent as they are rather than copied into one binary first."""
        packer = msgpack.Packer(use_bin_type=True)
        with_ids = self.ids.count(None) < len(self.ids)
        size = sum(len(piece) for piece in self.pieces)
        head = (packer.pack_map_header(4 + with_ids + (self.windows is not None)) + packer.pack("start") + packer.pack(self.start)
                + packer.pack("count") + packer.pack(self.count) + packer.pack("data") + _bin_header(size, smallest=True))
        tail = packer.pack("errors") + packer.pack(self.errors)
        if with_ids:
            tail += packer.pack("ids") + packer.pack(self.ids)
        if self.windows is not None:
            tail += packer.pack("windows") + packer.pack(self.windows)
            self.windows = []
        frame = [head, *self.pieces, tail]
        self.count, self.weight, self.pieces, self.errors, self.ids = 0, 0, [], [], []
        return frame


def parquet(data: JobData, job: Job) -> Iterator[bytes]:
    """The result as one Parquet file: a compacted job's only file as stored, else written here."""
    prefix = job_prefix(job.id)
    if job.compacted:
        manifest = result_files.read_manifest(data.store, prefix)
        if manifest is not None and len(manifest["files"]) == 1:
            yield from data.store.blocks(prefix + manifest["files"][0]["path"], defaults.FILE_BLOCK_BYTES)
            return
        yield from _parquet_bytes(result_files.iter_result_batches(data.store, prefix))
        return
    # Stopped early: the per-chunk parts regrouped into row groups, as a compaction would write them.
    schema, groups = result_files.row_groups(chunk_outputs(data, job), job.dim, job.embedding_type,
                                             windows=job.long_input == "windows")
    yield from _parquet_bytes(groups, schema)


class _Spool:
    """A write-only file for ParquetWriter whose bytes are taken out after each row group."""

    closed = False

    def __init__(self):
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data) -> int:
        data = bytes(data)
        self._parts.append(data)
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def _parquet_bytes(groups: Iterator, schema=None) -> Iterator[bytes]:
    """One Parquet file from record batches or tables (one row group each), a row group in memory at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    groups = iter(groups)
    first = next(groups, None)
    if schema is None:
        schema = first.schema if first is not None else result_files.result_schema(0)
    spool = _Spool()
    with pq.ParquetWriter(pa.PythonFile(spool, mode="w"), schema) as writer:
        while first is not None:
            if isinstance(first, pa.RecordBatch):
                writer.write_batch(first)
            else:
                writer.write_table(first)
            if piece := spool.take():
                yield piece
            first = next(groups, None)
    yield spool.take()


def _then_release(stream: Callable[[JobData, Job], Iterator[bytes]]) -> Callable[[JobData, Job], Iterator[bytes]]:
    """`stream`, giving the memory it freed back to the system when it ends or is cut (api/memory.py)."""

    @functools.wraps(stream)
    def released(data: JobData, job: Job) -> Iterator[bytes]:
        try:
            yield from stream(data, job)
        finally:
            memory.release()

    return released


STREAMS = {fmt: _then_release(stream) for fmt, stream in (
    (JSON, json_list), (NDJSON, ndjson), (MSGPACK, msgpack_matrix), (MSGPACK_STREAM, msgpack_stream),
    (PARQUET, parquet))}
