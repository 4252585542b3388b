"""Bulk slots: threads that claim job chunks from the scheduler, never through Celery's task slots.

A slot runs each chunk it claims (worker/chunk_runner.py), and a job's compaction step, claimed or
handed to it by the finish of the job's last chunk, through embedserve/jobs/compaction.py.

If Celery's consumer took bulk work too, chunks would fill every prefetch slot and a sync
request's message would wait in Redis until some chunk finished. So Celery consumes only the
interactive queue, and this module runs EMBED_BULK_SLOTS threads, each claiming one chunk at a
time (embedserve/jobs/scheduler.py): at most that many chunks are in the worker at once, and none of
them stands between a sync message and a free task thread.

Every claimed chunk is in the worker's held set until it finishes, so a dead worker's chunks are
handed back by whoever reaps it (embedserve/fleet/liveness.py). `drain` stops claiming at once, lets the
chunks in hand finish within a deadline, and reports whether they did; the caller hands back the
rest.

A claim or a hand-back that fails with a Redis error (a timeout: embedserve/redis_client.py) may
still have happened on the server, and a retried claim may have claimed twice: the chunk would sit
in this worker's held set, run by nobody, and its job would never end while this worker lives. So
after such an error the next slot to reach Redis hands back every held chunk that no slot runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from embedserve.fleet.stage_times import BULK, StageTimes
from embedserve.jobs.scheduler import Claim, Scheduler
from embedserve.jobs.scripts import COMPACT_CHUNK

log = logging.getLogger(__name__)

# Seconds between tries after Redis went away.
RECONNECT_S = 1.0


class BulkSlots:
    """`slots` threads that claim chunks of `model` for `worker_id`: `run_chunk(claim)` runs a chunk (true when its
    finish handed this worker the job's compaction step), `compact(job_id)` runs a compaction step."""

    def __init__(self, scheduler: Scheduler, model: str, worker_id: str, run_chunk: Callable[[Claim], bool],
                 compact: Callable[[str], None], slots: int, stages: StageTimes | None = None):
        self._scheduler = scheduler
        self._model = model
        self._worker_id = worker_id
        self._run_chunk = run_chunk
        self._compact = compact
        self._stages = stages or StageTimes()  # "claim" and "compact" seconds of the bulk path's account
        self._stop = threading.Event()
        self._busy = 0
        self._lock = threading.Lock()
        # "job|chunk" of the claims the slots run now; a claim and its entry here are made under _lock.
        self._running: set[str] = set()
        # Set after a Redis error that may have left a claimed chunk in Redis that no slot runs.
        self._unsure = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"bulk-{i}", daemon=True) for i in range(slots)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def drain(self, timeout: float) -> bool:
        """Claim nothing more; wait up to `timeout` s for the chunks in hand. True when all finished."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    @property
    def busy(self) -> int:
        """Chunks in hand now."""
        return self._busy

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._unsure.is_set():
                    self.release_strays()
                started = time.perf_counter()
                claim = self._claim()
                if claim is not None:
                    self._stages.record(BULK, "claim", time.perf_counter() - started)
                else:
                    self._scheduler.wait_for_work(self._model)
                    continue
            except redis.RedisError:
                self._unsure.set()
                log.warning("bulk slot lost Redis; trying again", exc_info=True)
                self._stop.wait(RECONNECT_S)
                continue
            left_held = False
            step = claim  # what this slot holds now: the chunk, then the compaction its finish handed over
            try:
                if claim.is_compaction or self._run_chunk(claim):
                    step = Claim(claim.job_id, COMPACT_CHUNK, 0)
                    with self._stages.timed(BULK, "compact"):
                        self._compact(claim.job_id)
            except Exception:  # noqa: BLE001 - e.g. Redis or the store down mid-chunk: give it back
                log.exception("job %s chunk %s failed unexpectedly; handing it back", step.job_id, step.chunk)
                # The step, not the finished chunk: handing that back does nothing, and a compaction
                # left held would hold its job in_progress until this worker dies or drains.
                left_held = not self._give_back(step)
                # A pause before the next claim: what failed (the store, Redis) is likely still away, and
                # the step just handed back is first in its job's line, so this slot would take it again.
                self._stop.wait(RECONNECT_S)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._running.discard(_entry(claim.job_id, claim.chunk))
                    if left_held:
                        # Only now, under the lock and out of _running: a stray check that saw the chunk
                        # still running (and skipped it) must not clear this afterwards (a failover did).
                        self._unsure.set()

    def _claim(self) -> Claim | None:
        with self._lock:  # no stray check may see the claim in Redis before it is in _running
            claim = self._scheduler.claim(self._model, self._worker_id)
            if claim is not None:
                self._busy += 1
                self._running.add(_entry(claim.job_id, claim.chunk))
            return claim

    def release_strays(self) -> list[str]:
        """Hand back (attempt refunded) every chunk Redis says this worker holds but no slot runs.

        A compaction step ("job|c") held while a slot still runs a chunk of that job is the one that
        slot's finish just handed it: left alone, and checked again next time.
        """
        with self._lock:
            running_jobs = {entry.rsplit("|", 1)[0] for entry in self._running}
            strays, unsure = [], False
            for entry in self._scheduler.held(self._worker_id):
                job_id, chunk = entry.rsplit("|", 1)
                if entry in self._running:
                    continue
                if chunk == COMPACT_CHUNK and job_id in running_jobs:
                    unsure = True
                    continue
                self._scheduler.hand_back(Claim(job_id, chunk, 0), self._worker_id, refund=True)
                strays.append(entry)
            if not unsure:
                self._unsure.clear()
        if strays:
            log.warning("handed back %d chunk(s) held in Redis by this worker but run by no slot "
                        "(a claim whose reply was lost): %s", len(strays), ", ".join(strays))
        return strays

    def _give_back(self, claim: Claim) -> bool:
        """Hand a chunk back (its attempt stays counted); False when Redis is down too (the caller then
        sets _unsure, so the next slot to reach Redis hands it back)."""
        try:
            self._scheduler.hand_back(claim, self._worker_id, refund=False)
            return True
        except redis.RedisError:
            log.warning("could not hand back job %s chunk %s now; a slot does once Redis answers",
                        claim.job_id, claim.chunk)
            return False


def _entry(job_id: str, chunk: str) -> str:
    """A held-set entry, as the job scripts write it."""
    return f"{job_id}|{chunk}"
