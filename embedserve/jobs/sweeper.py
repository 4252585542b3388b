"""The sweeper: deletes the data of expired jobs and uploaded files, and of submissions a dead API left half-written.

A job's data (inputs, parts, Parquet results) lives in the job store until its `expires_at`
(EMBED_JOB_TTL after submission); its record stays EMBED_JOB_RECORD_GRACE longer so that
`GET /v1/jobs/{id}` can answer `expired`. Every API and worker process runs a sweeper, so
expiry works with no worker up; a short Redis lock keeps two from sweeping at once. For an S3
store, a bucket lifecycle rule on `jobs/` (expire after EMBED_JOB_TTL + a day) is a good second
line (see docs/deployment.md, "An S3 lifecycle rule").
"""

from __future__ import annotations

import uuid

import redis

from embedserve import redis_keys
from embedserve.jobs.data import JobData
from embedserve.jobs.records import JobRecords
from embedserve.periodic import Periodic

# Seconds between sweeps.
SWEEP_INTERVAL_S = 30.0
# Seconds after which a submission still pending is taken for one whose API died mid-way.
PENDING_GIVE_UP_S = 3600
# Jobs handled per sweep (the rest wait for the next one).
SWEEP_BATCH = 100

# Delete the lock only if it is still ours: a sweep that outlived the lock's expiry must not
# delete the lock another process took since.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Sweeper(Periodic):
    """`sweep` every SWEEP_INTERVAL_S, on a thread of its own once started."""

    def __init__(self, records: JobRecords, data: JobData, client: redis.Redis, interval: float = SWEEP_INTERVAL_S):
        super().__init__("sweeper", interval, self.sweep)
        self._records = records
        self._data = data
        self._redis = client
        self._release = client.register_script(_RELEASE)

    def sweep(self) -> int:
        """Expire what is due now; returns how many jobs were handled (0 when another process holds the lock)."""
        # The lock expires by itself, so a process killed mid-sweep holds it up no longer than that.
        token = uuid.uuid4().hex
        if not self._redis.set(redis_keys.sweeper_lock(), token, nx=True, ex=max(1, int(self.interval * 2))):
            return 0
        try:
            # Redis's clock, as the job scripts use (they stamp expiry and pending times with TIME):
            # a host whose clock runs ahead must not expire jobs early.
            now = self._redis.time()[0]
            due = [i.decode() for i in self._redis.zrangebyscore(redis_keys.jobs_expiry(), "-inf", now, 0, SWEEP_BATCH)]
            for job_id in due:
                self._data.delete(job_id)  # data first: a crash now leaves the id due, swept again
            self._records.expire(due)
            # Once more after the records say expired: a chunk that wrote its part between the first
            # delete and the mark was counted (its job still ran) and its worker keeps the part; one
            # that finishes after the mark is told 'expired' and deletes its own part.
            for job_id in due:
                self._data.delete(job_id)
            stale = [i.decode() for i in self._redis.zrangebyscore(redis_keys.jobs_pending(), "-inf",
                                                                    now - PENDING_GIVE_UP_S, 0, SWEEP_BATCH)]
            for job_id in stale:
                if not self._redis.exists(redis_keys.job(job_id)):
                    self._data.delete(job_id)
                self._redis.zrem(redis_keys.jobs_pending(), job_id)
            files = [i.decode() for i in self._redis.zrangebyscore(redis_keys.files_expiry(), "-inf", now, 0, SWEEP_BATCH)]
            for file_id in files:  # uploaded files' content (their Redis records expire by TTL)
                self._data.store.delete(f"files/{file_id}")
            if files:
                self._redis.zrem(redis_keys.files_expiry(), *files)
            return len(due) + len(stale) + len(files)
        finally:
            self._release(keys=[redis_keys.sweeper_lock()], args=[token])
