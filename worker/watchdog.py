"""The forward-pass watchdog: EMBED_TASK_TIME_LIMIT for a pass that never returns.

Neither a Python thread nor a CUDA kernel can be interrupted, and Celery's threads pool ignores
task time limits, so a hung forward would hold its chunks forever. This thread watches the
batcher's current pass; when one has run past the limit, the worker hands back everything it
holds and exits (its supervisor or orchestrator starts a fresh one). Only the chunks of the hung
pass keep the attempt it cost them, so a chunk that hangs every worker ends failed after
EMBED_MAX_ATTEMPTS instead of looping; the others go back as if never taken. Sync chunks need
nothing here: the worker leaves the fleet at once, and the APIs waiting for its chunks send them
to another worker (api/inflight.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from embedserve.fleet.liveness import Liveness
from embedserve.jobs.scheduler import Claim, Scheduler

log = logging.getLogger(__name__)

# Exit status of a worker that gave up on a hung forward pass.
HUNG_EXIT_CODE = 3
# Test-only hook: a worker started with this variable hangs forever on a pass holding that text.
TEST_HANG_ENV = "EMBED_TEST_HANG_TEXT"


def hang_on(forward: Callable, row: list[int]) -> Callable:
    """`forward` that never returns for a batch containing `row` (tests of the watchdog only)."""
    def forward_or_hang(rows, *args):
        if row in rows:
            log.warning("%s: this forward pass hangs on purpose", TEST_HANG_ENV)
            threading.Event().wait()
        return forward(rows, *args)

    return forward_or_hang


class Watchdog:
    """A daemon thread that ends the worker when `batcher.pass_started` is older than `limit` s."""

    def __init__(self, batcher, limit: float, liveness: Liveness, scheduler: Scheduler, worker_id: str, model: str,
                 exit: Callable[[int], None] = os._exit):
        self._batcher = batcher
        self._limit = limit
        self._liveness = liveness
        self._scheduler = scheduler
        self._worker_id = worker_id
        self._model = model
        self._exit = exit
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        interval = min(1.0, self._limit / 4)
        while True:
            time.sleep(interval)
            started = self._batcher.pass_started
            if started is not None and time.monotonic() - started > self._limit:
                self._give_up(self._batcher.pass_tags)
                return

    def _give_up(self, tags: frozenset[str]) -> None:
        log.error("a forward pass has run for over %gs (EMBED_TASK_TIME_LIMIT); handing back all work and exiting",
                  self._limit)
        try:
            for tag in tags:  # the hung pass's chunks: their attempt stays counted
                job_id, _, chunk = tag.partition("|")
                if chunk:
                    self._scheduler.hand_back(Claim(job_id, chunk, 0), self._worker_id, refund=False)
            self._liveness.leave(self._worker_id, self._model, refund=True)
        except Exception:  # noqa: BLE001 - exit anyway: the reaper hands the rest back after the dead-after time
            log.exception("could not hand work back; the reaper will")
        logging.shutdown()
        self._exit(HUNG_EXIT_CODE)
