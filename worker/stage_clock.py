"""The worker's half of a sync chunk's stage account: where its time went between pick-up and reply.

A sync task (worker/tasks.py) starts a clock when its message reaches it; the batcher stamps its
submission (queued, first in a pass, done) and `wait_rows` hands that submission to the clock of the
thread that waited for it. The reply carries the durations measured here, on this worker's
monotonic clock, plus two wall-clock marks (picked up, reply sent) the API uses to split the time
spent between the processes (api/stage_account.py). Jobs' chunks run without a clock: noting costs
them one thread-local lookup.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

_local = threading.local()


class StageClock:
    """Marks of one sync chunk on this worker, turned into the reply's `stages`."""

    def __init__(self):
        self.picked_wall = time.time()
        self.picked = time.monotonic()
        self.claimed = self.picked
        self._submission = None
        self._resumed: float | None = None

    def claim_done(self) -> None:
        self.claimed = time.monotonic()

    def waited(self, submission) -> None:
        """The task thread has `submission`'s rows back from the batcher (its forward ran)."""
        self._submission, self._resumed = submission, time.monotonic()

    def stages(self) -> dict[str, float]:
        """Seconds per stage, and the wall-clock marks `picked_at`/`replied_at`; taken just before the reply is sent.

        Without a batcher submission (a refusal, /tokenize) the work after the claim counts as `encode`.
        """
        now = time.monotonic()
        out = {"picked_at": self.picked_wall, "claim": self.claimed - self.picked}
        sub = self._submission
        if sub is not None and sub.pass_started is not None and sub.done is not None:
            out.update(tokenize=sub.submitted - self.claimed, batch_wait=sub.pass_started - sub.submitted,
                       forward=sub.done - sub.pass_started, wake=self._resumed - sub.done,
                       encode=now - self._resumed)
        else:
            out["encode"] = now - self.claimed
        out["replied_at"] = time.time()
        return out


@contextlib.contextmanager
def timing() -> Iterator[StageClock]:
    """A clock for the sync chunk this thread runs now; `waited` finds it."""
    clock = _local.clock = StageClock()
    try:
        yield clock
    finally:
        _local.clock = None


def waited(submission) -> None:
    """Note on this thread's clock, if it runs one, that `submission` came back."""
    clock = getattr(_local, "clock", None)
    if clock is not None:
        clock.waited(submission)
