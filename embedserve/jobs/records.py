"""Job records in Redis: status, counters, timestamps (the chunk payloads are embedserve/jobs/chunks.py).

Shared by the API (read, list, cancel, delete) and workers. A job is a hash plus a few small
keys (done chunks, attempts, an error sample): Redis's memory does not grow with a job's inputs,
which live in the job store (embedserve/jobs/data.py). Counting is exactly once: the counters move
only when SADD of a chunk number says it is new, inside one Lua script (embedserve/jobs/scripts.py).
Creating and running jobs is the scheduler's (embedserve/jobs/scheduler.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

import redis

from embedserve import redis_keys
from embedserve.jobs import scripts as job_scripts


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
    embedding_type: str = "float"  # the vectors' type (embedserve/vector_types.py), in the store and results
    long_input: str = "error"  # the request's long_input: "windows" gives the result its windows (column, key)
    expires_at: int = 0
    started_at: int | None = None
    completed_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    stop_as: str | None = None  # set when the job stops early: "cancelled" or "expired"
    compacted: int = 0  # 1 once its results are Parquet files in the store
    # 1 when its key had a webhook endpoint at submission: its end then records an event (embedserve/events/).
    webhook: int = 0
    webhook_delivered_at: int | None = None  # when its event was delivered (a receiver answered 2xx)
    batch_id: str | None = None  # the OpenAI batch a batch-backed job runs, which its event names
    cached: int = 0  # inputs whose vector came from the embedding cache (set at compaction)

    @classmethod
    def from_hash(cls, data: dict[bytes, bytes]) -> Job:
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
    """The per-status index keys, in STATUS_ORDER."""
    return [redis_keys.jobs_by_status(status) for status in job_scripts.STATUS_ORDER]


def job_record(job: Job, error_sample: int) -> dict:
    """The hash fields a new job is created with."""
    record = {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(job).items() if v is not None}
    record.update(error_sample=error_sample, next=0, settled=0, created_ms=int(time.time() * 1000))
    return record


class JobRecords:
    """Job records in one Redis; the connection is passed in."""

    def __init__(self, client: redis.Redis, error_sample: int = 10):
        self.redis = client
        self.sample_size = error_sample
        self._cancel = client.register_script(job_scripts.CANCEL)
        self._expire = client.register_script(job_scripts.EXPIRE)
        # Only on a record that still exists: a job deleted meanwhile must not come back as a bare hash.
        self._set_fields = client.register_script(
            "if redis.call('HEXISTS', KEYS[1], 'status') == 1 then redis.call('HSET', KEYS[1], unpack(ARGV)) end")

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None when unknown, past its record's life, or (given `owner`) someone else's."""
        data = self.redis.hgetall(redis_keys.job(job_id))
        if not data:
            return None
        job = Job.from_hash(data)
        if owner is not None and job.owner != owner:
            return None
        return job

    def list(self, owner: str, kind: str, limit: int, after: str | None) -> tuple[list[str], bool]:
        """Ids of `owner`'s objects of `kind`, newest first, after the id `after`; and whether more exist."""
        index = redis_keys.owned(owner, kind)
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
        self.redis.zrem(redis_keys.owned(owner, kind), object_id)

    def error_sample(self, job_id: str) -> list[dict]:
        """The first item errors of a job."""
        return [json.loads(e) for e in self.redis.lrange(redis_keys.job_errors(job_id), 0, -1)]

    def count_by_status(self) -> dict[str, int]:
        """How many live jobs are in each status: one ZCOUNT per status, expired ids not counted."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for index in _status_keys():
            pipe.zcount(index, now, "+inf")
        return dict(zip(job_scripts.STATUS_ORDER, pipe.execute()))

    def cancel(self, job_id: str) -> JobStatus | None:
        """Stop handing out the job's chunks; the status after, or None if the job is gone."""
        status = self._cancel(keys=[], args=[redis_keys.PREFIX, job_id])
        return JobStatus(status.decode()) if status is not None else None

    def set_counts(self, job_id: str, **counts: int) -> None:
        """Set some of a job's counts (`completed`, `failed`, `cached`) to the values compaction found in its
        results (embedserve/jobs/compaction.py): absolute, so a compaction run twice sets the same."""
        args = [value for pair in counts.items() for value in pair]
        self._set_fields(keys=[redis_keys.job(job_id)], args=args)

    def expire(self, job_ids: list[str]) -> None:
        """Mark jobs whose data was deleted as expired (stopping any that still run)."""
        if job_ids:
            self._expire(keys=[], args=[redis_keys.PREFIX, *job_ids])

    def delete(self, job: Job) -> None:
        """Drop the job's record and every small key it owns; its store data is the caller's to delete."""
        self.cancel(job.id)  # out of the rotation and the quota first, so nothing claims it meanwhile
        pipe = self.redis.pipeline(transaction=False)
        pipe.unlink(redis_keys.job(job.id), redis_keys.job_done(job.id), redis_keys.job_ok(job.id),
                    redis_keys.job_counted(job.id),
                    redis_keys.job_attempts(job.id), redis_keys.job_errors(job.id), redis_keys.job_retry(job.id))
        pipe.hdel(redis_keys.quota(job.owner), job.id)
        pipe.zrem(redis_keys.jobs_expiry(), job.id)
        for index in _status_keys():
            pipe.zrem(index, job.id)
        pipe.execute()
        self.forget(job.owner, "jobs", job.id)
