"""Submitting bulk work, for jobs and batches alike: store the inputs, then queue the job whole.

The inputs go to the job store first; then one atomic step in Redis checks the key's quota,
writes the record and puts the job in its model's rotation (embedserve/jobs/scheduler.py). A
submission that fails half-way leaves no job behind: the inputs written are removed, and if the
API itself dies first, the sweeper removes them (the submission was noted as pending).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import redis

from embedserve import defaults, redis_keys
from embedserve.errors import InvalidRequest, RateLimited
from embedserve.jobs.chunks import ChunkSpec
from embedserve.jobs.data import JobData
from embedserve.jobs.records import Job, job_record
from embedserve.jobs.scheduler import QuotaExceeded, Scheduler

# The error code of a submission over the key's cap of queued inputs.
QUEUE_LIMIT_EXCEEDED = "queue_limit_exceeded"
# Seconds a key over its bulk quota is told to wait: about when a chunk or two of its jobs finish.
QUOTA_RETRY_AFTER_S = 10
# Seconds between renewals of a submission's pending mark while its inputs are written: well under
# the sweeper's give-up time (embedserve/jobs/sweeper.py: PENDING_GIVE_UP_S), so a long upload
# (a big file to a slow S3) is never taken for one a dead API left.
PENDING_RENEW_S = 300.0


def check_quota(scheduler: Scheduler, owner: str, inputs: int, cap: int) -> None:
    """400 when `inputs` alone is over the cap (retrying cannot help), 429 when the key's queue is; else nothing."""
    if cap <= 0:
        return
    if inputs > cap:
        raise InvalidRequest(f"This job has {inputs} inputs, more than this key may have queued at once ({cap}, "
                             f"EMBED_MAX_QUEUED_INPUTS_PER_KEY); split it into smaller jobs.", param="input",
                             code=QUEUE_LIMIT_EXCEEDED)
    used = scheduler.queued_inputs(owner)
    if used + inputs > cap:
        raise over_quota(used, inputs, cap)


def over_quota(used: int, inputs: int, cap: int) -> RateLimited:
    return RateLimited(f"This key has {used} inputs in queued or running jobs; {inputs} more would pass its cap "
                       f"of {cap}. Retry when some finish.", code=QUEUE_LIMIT_EXCEEDED,
                       retry_after=QUOTA_RETRY_AFTER_S)


def submit(scheduler: Scheduler, data: JobData, job: Job, specs: Iterable[ChunkSpec], *, cap: int, ttl: int,
           listed: bool = True, stored: Callable[[Job], dict] | None = None,
           then: Callable[[], None] | None = None) -> Job:
    """Check the key's quota for `job.total` inputs, write the job's chunk inputs, then create it whole
    in one step (quota, record kept `ttl` seconds, rotation; `listed`: in the key's job list).

    `stored(job)` runs once the inputs are written and returns record fields besides the job's (a
    batch learns its model and refused lines from its inputs); `then()` runs once the job is queued
    (a batch saves its own record). If any step fails, the inputs go; if SUBMIT's reply was lost but
    the job exists, the submission stands.
    """
    check_quota(scheduler, job.owner, job.total, cap)
    scheduler.note_pending(job.id)
    job.chunks = data.put_inputs(job.id, renewing_pending(specs, scheduler, job.id))  # removes what it wrote if it fails
    try:
        extra = stored(job) if stored is not None else {}
        scheduler.submit({**job_record(job, defaults.JOB_ERROR_SAMPLE), **extra}, cap=cap, listed=listed, ttl=ttl)
    except QuotaExceeded as over:  # another submission of the key won the race for the last room
        data.delete(job.id)
        raise over_quota(over.used, job.total, cap) from None
    except redis.RedisError:
        # The reply was lost: SUBMIT may have run, and the job with it. One that exists is accepted
        # (its inputs must stay: it runs from them); one that does not is cleaned up. Redis unreachable
        # even for that: the inputs stay, noted pending, and the sweeper removes them if no job came of it.
        if not scheduler.redis.exists(redis_keys.job(job.id)):
            data.delete(job.id)
            raise
    except BaseException:
        data.delete(job.id)
        raise
    if then is not None:
        try:
            then()
        except BaseException:
            # The job was queued but its follow-up failed: it goes whole, record and quota entry too.
            data.delete(job.id)
            scheduler.redis.unlink(redis_keys.job(job.id))
            scheduler.redis.hdel(redis_keys.quota(job.owner), job.id)
            raise
    return job


def renewing_pending(specs: Iterable[ChunkSpec], scheduler: Scheduler, job_id: str,
                     every: float = PENDING_RENEW_S) -> Iterator[ChunkSpec]:
    """`specs`, renewing the submission's pending mark every `every` seconds while they are written."""
    last = time.monotonic()
    for spec in specs:
        if time.monotonic() - last >= every:
            scheduler.note_pending(job_id)
            last = time.monotonic()
        yield spec
