"""The bulk scheduler: which chunk of which job a worker runs next, in fair turns between keys.

No chunk messages are queued for a job. Its record holds a cursor (`next`) over its chunks, and
its model's rotation holds the job: a ring of owners (API keys) with work, and for each owner its
active jobs, oldest first. A worker's bulk slot claims one chunk at a time (`CLAIM`): the next
owner in the ring takes its turn, so a small job of key B interleaves with key A's million-input
job instead of waiting behind it. A chunk handed back (its worker died, drained or hung) goes
first in its job's line. Because nothing but the job id sits in the rotation:
- submission is one atomic step (`SUBMIT`: quota, record, rotation) after the inputs are in the
  job store: a job is queued whole or not at all;
- cancel and delete cost the others nothing at once: the job leaves the rotation, no messages
  are left to skip;
- Redis holds a few keys per job, not one message per chunk.

Every claimed chunk is recorded in the worker's held set (`redis_keys.held`), so whoever finds the
worker dead (embedserve/fleet/liveness.py) can hand it back; `finish` releases it.

Replication is asynchronous: a primary that dies loses its last writes, and the replica Sentinel
promotes lacks them. With `wait_replicas` set (EMBED_REDIS_WAIT_REPLICAS), SUBMIT, FINISH and
FINALIZE are each followed by `WAIT wait_replicas wait_timeout_ms` on the same connection (one
pipeline, one round trip), so the API answers 202 only once a replica holds the job, and a worker
moves on from a chunk only once a replica holds its count (a count lost in a failover would leave
the chunk held by a live worker, and its job would never end). WAIT is per connection: it waits
for that connection's writes, which is why the script and the WAIT share one. A WAIT that times
out (no replica up) is logged and the call goes on: the write is on the primary, and refusing
every job while a replica is down would trade availability for nothing. Then the scheduler skips
WAIT for WAIT_BACKOFF_S before it tries again, so a primary left without replicas (after a failover
with one replica, until the old primary rejoins) costs a timeout per WAIT_BACKOFF_S, not per
write. If the connection drops before the reply (the primary died), the client retries the pair
on the new primary; the scripts are safe to run twice (request tokens, SUBMIT's id check).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from embedserve import redis_keys
from embedserve.jobs import scripts as job_scripts

log = logging.getLogger(__name__)

# Seconds an idle bulk slot blocks waiting for a wake-up before it looks again anyway.
IDLE_WAIT_S = 1.0
# Seconds between two warnings about writes no replica acknowledged in time.
WAIT_WARNING_INTERVAL_S = 60.0
# Seconds writes go without WAIT after one timed out (no replica, or one far behind).
WAIT_BACKOFF_S = 10.0


class QuotaExceeded(Exception):
    """The owner's queued inputs plus this job's would pass its cap; nothing was stored."""

    def __init__(self, used: int):
        super().__init__(f"{used} inputs queued")
        self.used = used


@dataclass(frozen=True)
class Claim:
    """One chunk a worker now holds: `chunk` is a number, or COMPACT_CHUNK."""

    job_id: str
    chunk: str
    attempt: int

    @property
    def is_compaction(self) -> bool:
        return self.chunk == job_scripts.COMPACT_CHUNK


@dataclass(frozen=True)
class Backlog:
    """A model's bulk work: chunks not yet handed out (or handed back), and chunks workers hold."""

    waiting: int
    running: int


# ARGV: prefix, model. Returns {waiting, running}.
_BACKLOG = """
local p, model = ARGV[1], ARGV[2]
local base = p .. 'sched:' .. model
local waiting = 0
for _, owner in ipairs(redis.call('LRANGE', base .. ':ring', 0, -1)) do
  for _, id in ipairs(redis.call('ZRANGE', base .. ':owner:' .. owner, 0, -1)) do
    local f = redis.call('HMGET', p .. 'job:' .. id, 'next', 'chunks', 'stop_as')
    if f[1] and not f[3] then
      waiting = waiting + tonumber(f[2]) - tonumber(f[1]) + redis.call('LLEN', p .. 'job:' .. id .. ':retry')
    end
  end
end
local running = 0
for _, worker in ipairs(redis.call('ZRANGE', p .. 'fleet', 0, -1)) do
  local info = redis.call('GET', p .. 'worker:' .. worker)
  if info and cjson.decode(info)['model'] == model then running = running + redis.call('HLEN', p .. 'held:' .. worker) end
end
return {waiting, running}
"""


def request_token() -> str:
    """A token per call: a retried command sends the same one, and the script answers it from memory."""
    return uuid.uuid4().hex


class Scheduler:
    """The rotation of one Redis: submit (API), claim / finish / finalize (workers)."""

    def __init__(self, client: redis.Redis, *, wait_replicas: int = 0, wait_timeout_ms: int = 1000):
        self.redis = client
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._warned_at = float("-inf")
        self._skip_wait_until = float("-inf")
        self._submit = client.register_script(job_scripts.SUBMIT)
        self._claim = client.register_script(job_scripts.CLAIM)
        self._finish = client.register_script(job_scripts.FINISH)
        self._finalize = client.register_script(job_scripts.FINALIZE)
        self._backlog = client.register_script(_BACKLOG)
        self._queued_inputs = client.register_script(job_scripts.QUEUED_INPUTS)
        self._hand_back = client.register_script(job_scripts.HAND_BACK_ALL + """
local p, worker, id, chunk = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
-- Only what the worker still holds: a repeated call, or one after a reaper handed the chunk back
-- already, must not queue a second copy.
if redis.call('HDEL', p .. 'held:' .. worker, id .. '|' .. chunk) == 0 then return 0 end
return hand_back(p, id, chunk, tonumber(ARGV[5]), now_s())
""")

    # -- API ---------------------------------------------------------------------------------

    def note_pending(self, job_id: str) -> None:
        """Mark a submission whose inputs are being written; the sweeper removes what a dead API left."""
        # Redis's clock, which the sweeper reads too.
        self.redis.zadd(redis_keys.jobs_pending(), {job_id: self.redis.time()[0]})

    def submit(self, record: dict, *, cap: int, ttl: int, listed: bool = True) -> None:
        """Create the job and put it in rotation, in one step; QuotaExceeded when over `cap` (0 = none).

        A repeated call for one record id (a retry after a lost reply) does nothing: the first one made it.
        """
        fields: list = []
        for name, value in record.items():
            if value is not None:
                fields += [name, value]
        used = int(self._replicated(self._submit, [redis_keys.PREFIX, record["id"], record["owner"], cap,
                                                   record["total"], ttl, 1 if listed else 0, *fields]))
        if used >= 0:
            raise QuotaExceeded(used)
        # -1: created; -2: this id exists already, so an earlier run of this same call created it

    def queued_inputs(self, owner: str) -> int:
        """Inputs of the owner's jobs that have not ended (what the quota counts; entries of gone jobs pruned)."""
        return int(self._queued_inputs(keys=[], args=[redis_keys.PREFIX, owner]))

    # -- workers -------------------------------------------------------------------------------

    def claim(self, model: str, worker_id: str, *, token: str | None = None) -> Claim | None:
        """The next chunk for a worker of `model`, now held by it; None when there is no work.

        `token` names the call (a new one when None): a second call with the same token answers what the
        first did, as a client's retry after a lost reply must."""
        got = self._claim(keys=[], args=[redis_keys.PREFIX, model, worker_id, token or request_token()])
        if not got:
            return None
        return Claim(got[0].decode(), got[1].decode(), int(got[2]))

    def wait_for_work(self, model: str, timeout: float = IDLE_WAIT_S) -> None:
        """Block until a submission or hand-back wakes an idle slot, or `timeout` passes."""
        self.redis.blpop([redis_keys.sched_wake(model)], timeout=timeout)

    def finish(self, claim: Claim, worker_id: str, *, completed: int, failed: int, tokens: int, dim: int,
               errors: list[dict], token: str | None = None) -> str:
        """Count a chunk's outcome once; returns the job's final status, 'compact', '', 'gone', or
        'late:<status>' when the job had ended first and nothing was counted, or 'counted:<status>' when it had
        ended after another run of this chunk was counted (the same answer for a repeated `token`)."""
        samples = [json.dumps(e) for e in errors]
        result = self._replicated(self._finish, [redis_keys.PREFIX, claim.job_id, claim.chunk, worker_id, completed,
                                                 failed, tokens, dim, token or request_token(), *samples])
        return result.decode() if isinstance(result, bytes) else str(result or "")

    def finished_chunks(self, job_id: str, chunks: Iterable[int]) -> set[int]:
        """Of `chunks`, those of a running job that have finished with vectors (their parts written, their rows
        counted, at least one completed: not a chunk given up or whose inputs were lost); none once the job has
        stopped (checked in the same step, so no stop comes between)."""
        asked = sorted(set(chunks))
        if not asked:
            return set()
        pipe = self.redis.pipeline(transaction=True)  # both read at one instant: no stop between them
        pipe.hget(redis_keys.job(job_id), "stop_as")
        pipe.smismember(redis_keys.job_ok(job_id), [str(c) for c in asked])
        stop_as, done = pipe.execute()
        return set() if stop_as else {chunk for chunk, member in zip(asked, done) if member}

    def finalize(self, job_id: str, worker_id: str, *, token: str | None = None) -> str:
        """End a native job whose results are compacted; returns its status, 'gone', or 'lost' when this
        worker no longer holds the compaction (it was reaped; the worker that took the step over ends it)."""
        result = self._replicated(self._finalize, [redis_keys.PREFIX, job_id, worker_id, token or request_token()])
        return result.decode() if isinstance(result, bytes) else str(result)

    def hand_back(self, claim: Claim, worker_id: str, *, refund: bool) -> None:
        """Give one held chunk back to its job (a transient failure counts its attempt: refund False)."""
        self._hand_back(keys=[], args=[redis_keys.PREFIX, worker_id, claim.job_id, claim.chunk, 1 if refund else 0])

    def backlog(self, model: str) -> Backlog:
        """Chunks of `model` waiting and running (the autoscaler's signal, with the sync queue's depth)."""
        waiting, running = self._backlog(keys=[], args=[redis_keys.PREFIX, model])
        return Backlog(int(waiting), int(running))

    def _replicated(self, script, args: list):
        """Run `script`, then (when `wait_replicas`) WAIT on the same connection until that many replicas
        have its writes or the timeout passes; returns the script's reply."""
        if not self.wait_replicas or time.monotonic() < self._skip_wait_until:
            return script(keys=[], args=args)
        for first_try in (True, False):
            pipe = self.redis.pipeline(transaction=False)  # one connection: WAIT waits for its own writes
            script(keys=[], args=args, client=pipe)
            pipe.wait(self.wait_replicas, self.wait_timeout_ms)
            try:
                reply, acked = pipe.execute()
                break
            except redis.exceptions.NoScriptError:
                # A new primary (after a failover) lacks the script until loaded: the next execute() loads it.
                # The scripts are safe to run twice, so whatever ran of this try costs nothing.
                if not first_try:
                    raise
        if acked < self.wait_replicas:
            now = time.monotonic()
            self._skip_wait_until = now + WAIT_BACKOFF_S
            if now - self._warned_at >= WAIT_WARNING_INTERVAL_S:
                self._warned_at = now
                log.warning("Redis write acknowledged by %d of %d replicas within %d ms (EMBED_REDIS_WAIT_REPLICAS); "
                            "a failover now could lose it; writes skip WAIT for %.0f s", acked, self.wait_replicas,
                            self.wait_timeout_ms, WAIT_BACKOFF_S)
        return reply

    def held(self, worker_id: str) -> list[str]:
        """The "job|chunk" entries a worker holds."""
        return sorted(k.decode() for k in self.redis.hkeys(redis_keys.held(worker_id)))
