"""The job store: records, chunk inputs and outputs, progress, all under job-scoped Redis keys.

Shared by the API (create, read, cancel, delete, stream results) and workers (start and finish
chunks). A job is a hash; its inputs are msgpack `ChunkSpec`s, one key per chunk; a finished
chunk writes one `ChunkOutput` key named by (job, chunk), so a redelivered chunk overwrites its
own result and never adds rows. Completion is counted with SADD of chunk numbers, and the
counters move only when SADD says the chunk is new, inside one Lua script: exactly once, even
when two workers finish the same chunk. Every key of a job expires with the job's hash.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import Enum
from collections.abc import Iterable
from typing import Any

import msgpack
import redis

from embedserve import job_scripts, keys

# Chunk inputs written per Redis round trip while storing a job.
STORE_PIPELINE = 64


class JobStatus(str, Enum):
    """Where a job is in its life."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED)


def new_id(prefix: str) -> str:
    """`prefix` + 32 hex digits of uuid4: 122 random bits."""
    return prefix + uuid.uuid4().hex


@dataclass
class ChunkSpec:
    """One chunk's work: items (a job's inputs, or a batch's lines) and their flattened inputs."""

    model: str
    items: list[int]  # item index (input index, or batch line) of each item
    counts: list[int]  # inputs of each item
    inputs: list  # every item's inputs, concatenated
    params: dict[str, Any] = field(default_factory=dict)  # input_type, instruction, truncate, dimensions
    meta: list | None = None  # per item: [custom_id, encoding_format] for batch lines

    def pack(self) -> bytes:
        return msgpack.packb(asdict(self), use_bin_type=True)

    @classmethod
    def unpack(cls, data: bytes) -> "ChunkSpec":
        return cls(**msgpack.unpackb(data, raw=False))


@dataclass
class ChunkOutput:
    """One chunk's result: vectors of the items that succeeded, an error for each that did not."""

    items: list[int]
    rows: list[int]  # vectors of each item (0 when it failed)
    tokens: list[int]  # tokens of each item
    dim: int
    vectors: bytes  # all rows, little-endian float32, row-major
    errors: list  # per item: None or {"status": int, "error": {OpenAI error object}}

    def pack(self) -> bytes:
        return msgpack.packb(asdict(self), use_bin_type=True)

    @classmethod
    def unpack(cls, data: bytes) -> "ChunkOutput":
        return cls(**msgpack.unpackb(data, raw=False))

    @property
    def completed(self) -> int:
        return sum(1 for e in self.errors if e is None)

    @property
    def failed(self) -> int:
        return len(self.errors) - self.completed


@dataclass
class Job:
    """A job record as read from its hash."""

    id: str
    owner: str
    kind: str  # "job" (native) or "batch" (behind an OpenAI batch)
    model: str
    status: JobStatus
    created_at: int
    total: int  # items: inputs of a native job, lines of a batch
    chunks: int
    completed: int = 0
    failed: int = 0
    tokens: int = 0
    dim: int = 0
    encoding_format: str = "float"
    expires_at: int = 0
    started_at: int | None = None
    completed_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None

    @classmethod
    def from_hash(cls, data: dict[bytes, bytes]) -> "Job":
        raw = {k.decode(): v.decode() for k, v in data.items()}
        ints = {name for name, f in cls.__dataclass_fields__.items() if "int" in str(f.type)}
        known = cls.__dataclass_fields__.keys()
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name in known:
                values[name] = int(value) if name in ints else value
        values["status"] = JobStatus(values["status"])
        return cls(**values)


def _status_keys() -> list[str]:
    """The per-status index keys, in the order the Lua scripts expect them."""
    return [keys.jobs_by_status(status) for status in job_scripts.STATUS_ORDER]


class JobStore:
    """Job records, chunk inputs and outputs in one Redis; the connection is passed in."""

    def __init__(self, client: redis.Redis, error_sample: int = 10):
        self.redis = client
        self.sample_size = error_sample
        self._start = client.register_script(job_scripts.START)
        self._finish = client.register_script(job_scripts.FINISH)
        self._cancel = client.register_script(job_scripts.CANCEL)

    # -- creation (API) --------------------------------------------------------------------

    def put_chunks(self, job_id: str, specs: Iterable[ChunkSpec], ttl: int) -> int:
        """Store chunk inputs (before the job record, so a failed submit leaves no job); returns how many.

        If `specs` raises (a bad line found late) or Redis fails, what was stored is removed.
        """
        count = 0
        try:
            pipe = self.redis.pipeline(transaction=False)
            for count, spec in enumerate(specs, start=1):
                pipe.set(keys.job_input(job_id, count - 1), spec.pack(), ex=ttl)
                if count % STORE_PIPELINE == 0:
                    pipe.execute()
            pipe.execute()
        except BaseException:
            self.discard_chunks(job_id, count)
            raise
        return count

    def create(self, job: Job, ttl: int, *, listed: bool = True) -> None:
        """Write the job record (after its chunks) and index it under its owner."""
        record = {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(job).items() if v is not None}
        record["error_sample"] = self.sample_size
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.job(job.id), mapping=record)
        pipe.expire(keys.job(job.id), ttl)
        now = time.time()
        pipe.zadd(keys.jobs_by_status(job.status.value), {job.id: int(now) + ttl})
        for index in _status_keys():  # ids whose jobs expired: keeps the status sets bounded
            pipe.zremrangebyscore(index, "-inf", now)
        if listed:
            index = keys.owned(job.owner, "jobs")
            pipe.zadd(index, {job.id: time.time()})
            pipe.zremrangebyscore(index, "-inf", time.time() - ttl)  # ids whose jobs expired
            pipe.expire(index, ttl)
        pipe.execute()

    def discard_chunks(self, job_id: str, count: int) -> None:
        """Drop inputs stored for a job whose submission failed half-way."""
        names = [keys.job_input(job_id, i) for i in range(count)]
        for start in range(0, len(names), 1000):
            self.redis.unlink(*names[start:start + 1000])

    # -- reading (API) ---------------------------------------------------------------------

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None when unknown, expired, or (given `owner`) someone else's."""
        data = self.redis.hgetall(keys.job(job_id))
        if not data:
            return None
        job = Job.from_hash(data)
        if owner is not None and job.owner != owner:
            return None
        return job

    def list(self, owner: str, kind: str, limit: int, after: str | None) -> tuple[list[str], bool]:
        """Ids of `owner`'s objects of `kind`, newest first, after the id `after`; and whether more exist."""
        index = keys.owned(owner, kind)
        top = "+inf"
        if after:
            score = self.redis.zscore(index, after)
            if score is None:
                return [], False
            top = f"({score!r}"
        ids = self.redis.zrevrangebyscore(index, top, "-inf", start=0, num=limit + 1)
        ids = [i.decode() for i in ids]
        return ids[:limit], len(ids) > limit

    def forget(self, owner: str, kind: str, object_id: str) -> None:
        """Drop an id from its owner's list (its object expired or was deleted)."""
        self.redis.zrem(keys.owned(owner, kind), object_id)

    def error_sample(self, job_id: str) -> list[dict]:
        """The first item errors of a job."""
        return [json.loads(e) for e in self.redis.lrange(keys.job_errors(job_id), 0, -1)]

    def output(self, job_id: str, index: int) -> ChunkOutput | None:
        """One chunk's output, or None when it never ran (cancelled or expired)."""
        raw = self.redis.get(keys.job_output(job_id, index))
        return ChunkOutput.unpack(raw) if raw is not None else None

    def spec(self, job_id: str, index: int) -> ChunkSpec | None:
        """One chunk's inputs and item layout."""
        raw = self.redis.get(keys.job_input(job_id, index))
        return ChunkSpec.unpack(raw) if raw is not None else None

    def count_by_status(self) -> dict[str, int]:
        """How many live jobs are in each status: one ZCOUNT per status, expired ids not counted."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for index in _status_keys():
            pipe.zcount(index, now, "+inf")
        return dict(zip(job_scripts.STATUS_ORDER, pipe.execute()))

    def cancel(self, job_id: str) -> JobStatus | None:
        """Ask workers to skip the job's remaining chunks; the status after, or None if the job is gone."""
        status = self._cancel(keys=[keys.job(job_id), keys.job_done(job_id), *_status_keys()],
                              args=[int(time.time())])
        # The script answers nil when the job was deleted (or expired) since the caller looked it up.
        return JobStatus(status.decode()) if status is not None else None

    def delete(self, job: Job) -> None:
        """Drop the job and every key it owns; queued chunks of it find nothing and end."""
        names = [keys.job(job.id), keys.job_done(job.id), keys.job_attempts(job.id), keys.job_errors(job.id),
                 keys.job_prefailed(job.id)]
        for i in range(job.chunks):
            names += [keys.job_input(job.id, i), keys.job_output(job.id, i)]
        for start in range(0, len(names), 1000):
            self.redis.unlink(*names[start:start + 1000])
        self.unindex(job.id)
        self.forget(job.owner, "jobs", job.id)

    def unindex(self, job_id: str) -> None:
        """Drop a deleted job's id from the per-status sets (so /metrics stops counting it)."""
        pipe = self.redis.pipeline(transaction=False)
        for index in _status_keys():
            pipe.zrem(index, job_id)
        pipe.execute()

    # -- chunk life (workers) --------------------------------------------------------------

    def start_chunk(self, job_id: str, index: int) -> tuple[str, int, bool]:
        """(job status or 'gone', this attempt's number, whether the chunk is already done)."""
        status, attempts, done = self._start(
            keys=[keys.job(job_id), keys.job_done(job_id), keys.job_attempts(job_id), *_status_keys()],
            args=[index, int(time.time())])
        return status.decode() if isinstance(status, bytes) else status, int(attempts), bool(done)

    def finish_chunk(self, job_id: str, index: int, output: ChunkOutput | None, *, skipped: bool = False) -> int:
        """Record a chunk's output exactly once; returns how many chunks are done (-1: job gone)."""
        if output is None:
            args = [index, b"", 0, 0, 0, 0, int(time.time()), 1 if skipped else 0]
        else:
            sample = [json.dumps({"index": item, **err["error"]}) for item, err in zip(output.items, output.errors)
                      if err is not None][: self.sample_size]
            args = [index, output.pack(), output.completed, output.failed, sum(output.tokens), output.dim,
                    int(time.time()), 0, *sample]
        return int(self._finish(keys=[keys.job(job_id), keys.job_done(job_id), keys.job_output(job_id, index),
                                      keys.job_errors(job_id), *_status_keys()], args=args))
