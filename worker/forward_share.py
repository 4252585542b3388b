"""How the forward thread's recent time splits between interactive and bulk passes.

Interactive rows go before bulk ones (worker/batcher.py), which is what a sync request wants, but
strict priority starves a job outright once sync traffic alone fills the forward thread: its
chunks wait until their deadline passes and fail, so accepted work is lost to load. So bulk work
is owed a floor, `min_share` of the forward thread's recent time (EMBED_BULK_MIN_SHARE): while it
has less, bulk rows wait and sync rows fill the worker (the batcher's saturation check), the
batcher takes a bulk pass before the waiting interactive rows. Below saturation nothing changes:
the interactive queue empties between passes and bulk work runs then, whatever its share.

Time is tallied with exponential decay (TAU_S), so the share follows the last few seconds of load,
not the worker's whole life: a job that arrives after an hour of sync-only traffic is owed its
floor at once, and an hour of bulk-only work earns no credit against later sync traffic.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

# Seconds over which past forward time fades (to 1/e): long enough to hold several passes of a
# CPU model, short enough that the share tracks the load of the moment.
TAU_S = 5.0


class ForwardShare:
    """Decayed seconds of forward time per priority (0 = interactive, 1 = bulk), and whether bulk is owed."""

    def __init__(self, min_share: float, tau_s: float = TAU_S, clock=time.monotonic,
                 on_charge: Callable[[int, float], None] | None = None):
        self.min_share = min_share
        self._on_charge = on_charge  # e.g. the worker's batch statistics: forward seconds by priority, for /metrics
        self._tau = tau_s
        self._clock = clock
        self._busy = [0.0, 0.0]
        self._at = clock()
        self._lock = threading.Lock()  # charged by the forward thread, read by metrics and tests too

    def charge(self, priority: int, seconds: float) -> None:
        """Add `seconds` of forward time spent on rows of `priority`."""
        seconds = max(0.0, seconds)
        with self._lock:
            self._decay()
            self._busy[priority] += seconds
        if self._on_charge is not None:
            self._on_charge(priority, seconds)

    def bulk_fraction(self) -> float:
        """Bulk's share of the recent forward time (0 when nothing ran lately)."""
        with self._lock:
            self._decay()
            total = self._busy[0] + self._busy[1]
            return self._busy[1] / total if total > 0 else 0.0

    def bulk_owed(self) -> bool:
        """Whether waiting bulk rows should go before waiting interactive ones now."""
        if self.min_share <= 0:
            return False
        with self._lock:
            self._decay()
            total = self._busy[0] + self._busy[1]
            return total > 0 and self._busy[1] < self.min_share * total

    def _decay(self) -> None:
        now = self._clock()
        factor = math.exp(-(now - self._at) / self._tau)
        self._busy = [b * factor for b in self._busy]
        self._at = now
