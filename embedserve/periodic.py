"""A housekeeping thread: one step every few seconds, in every API and worker process.

The reaper (embedserve/fleet/liveness.py) and the sweeper (embedserve/jobs/sweeper.py) are such steps. A
step that fails (Redis or the store away) is logged once per run of failures, not once a tick,
and the next tick tries again: housekeeping must outlive any one bad step.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """A daemon thread that calls `step()` every `interval` seconds until `stop()`."""

    def __init__(self, name: str, interval: float, step: Callable[[], object]):
        self.name = name
        self.interval = interval
        self._step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                self._step()
            except Exception:  # noqa: BLE001 - see the module docstring
                if not failing:
                    log.warning("%s failed; trying again every %gs", self.name, self.interval, exc_info=True)
                failing = True
                continue
            if failing:
                log.info("%s works again", self.name)
            failing = False
