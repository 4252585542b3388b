"""Graceful drain: a stopping worker takes nothing new, finishes what it holds, hands back the rest.

Started when Celery begins its warm shutdown (SIGTERM, SIGINT). At once: the worker leaves
routing (the API stops counting it, the heartbeat keeps it in the fleet so its chunks are not
reaped) and its bulk slots claim nothing more; Celery itself stops taking sync messages. Chunks
in hand get EMBED_DRAIN_TIMEOUT to finish; whatever is still held then is handed back at once,
its attempts refunded (a drain is no failure of the chunk), and the process exits even if a sync
task still runs: the API waiting for that task sees the worker gone and sends it elsewhere.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from embedserve.fleet.liveness import Liveness

log = logging.getLogger(__name__)


class Drain:
    """Runs the drain on its own thread, once; `finish` is the clean end once Celery has stopped."""

    def __init__(self, liveness: Liveness, worker_id: str, model: str, *, timeout: float, heartbeat,
                 bulk=None, exit: Callable[[int], None] = os._exit):
        self._liveness = liveness
        self._worker_id = worker_id
        self._model = model
        self._timeout = timeout
        self._heartbeat = heartbeat  # .withdraw(): out of routing, still alive; .stop(): no more beats
        self._bulk = bulk
        self._exit = exit
        self._started = threading.Event()
        self._done = threading.Event()

    def start(self) -> None:
        """Begin draining (idempotent): called from Celery's shutdown signal."""
        if self._started.is_set():
            return
        self._started.set()
        threading.Thread(target=self._run, name="drain", daemon=True).start()

    def _run(self) -> None:
        began = time.monotonic()
        log.info("draining: no new work; finishing what this worker holds within %gs", self._timeout)
        try:
            self._heartbeat.withdraw()
        except Exception:  # noqa: BLE001 - routing falls back to the dead-after time
            log.warning("could not withdraw from routing", exc_info=True)
        finished = self._bulk.drain(self._timeout) if self._bulk is not None else True
        if not finished:
            self.finish()
        # Sync tasks get what is left of the drain time; then the process goes whatever runs.
        if not self._done.wait(max(0.0, self._timeout - (time.monotonic() - began))):
            log.warning("drain time (EMBED_DRAIN_TIMEOUT=%gs) is up; exiting with work still running",
                        self._timeout)
            self.finish()
            logging.shutdown()
            self._exit(0)

    def finish(self) -> None:
        """Hand back whatever is still held (attempts refunded) and leave the fleet; idempotent."""
        try:
            self._heartbeat.stop()  # a beat after leaving would put the worker back in the fleet
            returned = self._liveness.leave(self._worker_id, self._model, refund=True)
            if returned:
                log.info("handed back %d chunks this worker did not finish", returned)
        except Exception:  # noqa: BLE001 - Redis gone: the reaper hands them back after the dead-after time
            log.warning("could not hand back held chunks", exc_info=True)
        self._done.set()
