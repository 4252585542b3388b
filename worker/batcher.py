"""Coalesce rows from many concurrent tasks into forward passes under a token budget.

Task threads `submit` their tokenized rows and wait on a future; one forward thread forms
batches: interactive rows before bulk ones, at most `max_batch_tokens` tokens and `max_rows`
rows per pass. A padded forward's pass costs rows x longest row, so its rows are taken longest
first (similar lengths together); a packed one (worker/packed/encoder.py) costs its rows' own tokens,
so rows are taken in arrival order. A pass with interactive rows takes no bulk rows (a sync
request must not pay for a bulk-sized forward), and while sync requests have been arriving
(within INTERACTIVE_RECENT_S) a bulk-only pass stays within `bulk_batch_tokens`, so an
interactive row that arrives mid-pass waits at most one short pass; a job running alone gets
full-size passes. A forward that can pause between layers (`preemptible`: the packed one) runs
the waiting interactive rows at each pause of a bulk pass, so a sync request waits for one
layer of a bulk pass, not the whole pass. Interactive priority is not absolute: once sync rows
have been waiting without a break for SATURATED_AFTER_S (they fill the worker) and bulk passes had
less than EMBED_BULK_MIN_SHARE of the forward thread's recent time (worker/forward_share.py), a
bulk pass goes first (and a paused one goes on without serving sync rows), so sync traffic that
fills the worker slows a job down but cannot starve it into its deadline; below saturation the
sync queue empties between passes and nothing changes. Tasks announce themselves with
`incoming()` before they tokenize, so the forward thread waits (bounded by `wait_s`) to fill a
batch only when more rows are known to be on their way: a lone request never pays for the wait. Rows whose
caller's deadline has passed are dropped before they cost a forward pass. A CUDA out-of-memory
error splits the batch and retries the halves; it never takes the worker down.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from embedserve import defaults
from embedserve.errors import InternalError, Timeout
from worker.forward_share import ForwardShare
from worker.model_thread import ModelThread

log = logging.getLogger(__name__)

INTERACTIVE, BULK = 0, 1
PRIORITY_NAMES = ("interactive", "bulk")
# Rows looked at when forming one batch: bounds the sort and keeps old rows from waiting long.
WINDOW_ROWS_FACTOR = 4
# Seconds without work after which the forward thread calls its idle hook (once per idle spell).
IDLE_S = 1.0
# Seconds the sync queue must stay non-empty (as seen at each batch and pause) before bulk's floor
# share may put a bulk pass ahead of it: below saturation the sync queue empties well within this,
# so a sync request never waits behind a bulk pass it did not have to; under saturation it bounds
# how long a job stalls before it gets its share.
SATURATED_AFTER_S = 1.0


@dataclass
class Submission:
    """One task's rows; its future resolves to a (rows x dim) float32 array in submission order."""

    rows: list[list[int]]
    deadline: float
    future: Future = field(default_factory=Future)
    remaining: int = 0
    priority: int = 0  # INTERACTIVE or BULK
    out: np.ndarray | None = None
    tag: str = ""  # who asked: a bulk chunk's "job|chunk", so a hung pass can name its chunks
    # Monotonic marks for the sync path's stage account (worker/stage_clock.py): queued, first in a pass, done.
    submitted: float = field(default_factory=time.monotonic)
    pass_started: float | None = None
    done: float | None = None

    def expired(self, now: float) -> bool:
        return now > self.deadline


@dataclass(frozen=True)
class _Row:
    submission: Submission
    index: int

    @property
    def length(self) -> int:
        return len(self.submission.rows[self.index])


class Batcher:
    """The single forward thread and its two queues."""

    def __init__(self, forward: Callable[[list[list[int]]], np.ndarray], *, max_batch_tokens: int,
                 max_rows: int = defaults.MAX_BATCH_ROWS, wait_s: float = defaults.BATCH_WAIT_S,
                 is_oom: Callable[[BaseException], bool] = lambda exc: False,
                 on_batch: Callable[[int, int], None] | None = None, bulk_batch_tokens: int | None = None,
                 padded: bool = True, on_idle: Callable[[], None] | None = None, preemptible: bool = False,
                 bulk_min_share: float = defaults.BULK_MIN_SHARE, saturated_after_s: float = SATURATED_AFTER_S,
                 on_forward_seconds: Callable[[str, float], None] | None = None,
                 model_thread: ModelThread | None = None):
        self._forward = forward
        # The forward loop runs on the thread that loaded the model (worker/model_thread.py); on one of its own
        # when none is given (scripts and tests that load the model themselves).
        self._model_thread = model_thread or ModelThread()
        self._finished: Future | None = None
        # forward(rows, pause) calls pause() between layers; bulk passes use it to let sync rows in.
        self.preemptible = preemptible
        self._on_idle = on_idle  # called once each time the thread has had no work for IDLE_S
        self.padded = padded  # a pass costs rows x longest row (True) or the sum of its rows (False)
        self._is_oom = is_oom
        self._on_batch = on_batch
        self.max_batch_tokens = max_batch_tokens
        self.bulk_batch_tokens = min(bulk_batch_tokens or max_batch_tokens, max_batch_tokens)
        self._last_interactive = -1e9  # monotonic time of the last interactive submission
        # Forward time per priority: bulk's floor under sync load, and (on_forward_seconds) /metrics' counter.
        report = (lambda priority, seconds: on_forward_seconds(PRIORITY_NAMES[priority], seconds)) \
            if on_forward_seconds else None
        self.share = ForwardShare(bulk_min_share, on_charge=report)
        self.saturated_after_s = saturated_after_s
        self._sync_waiting_since: float | None = None  # since when the sync queue has not been seen empty
        self._segment_started = 0.0  # when the running outer pass last resumed (after a pause): charged to it
        self.max_rows = max_rows
        self.wait_s = wait_s
        self._queues = (collections.deque(), collections.deque())
        self._cond = threading.Condition()
        self._stopping = False
        self._incoming = 0  # tasks that announced rows and have not submitted them yet
        # The pass running now: when it began (monotonic) and the tags of its submissions; the
        # worker's watchdog reads them to tell a hung forward (worker/watchdog.py).
        self.pass_started: float | None = None
        self.pass_tags: frozenset[str] = frozenset()

    def start(self) -> None:
        self._finished = self._model_thread.submit(self._run)
        self._finished.add_done_callback(_report_end)  # nothing else waits on it while it runs

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._finished:
            futures.wait([self._finished], timeout)

    def submit(self, rows: list[list[int]], *, priority: int, deadline: float, tag: str = "") -> Submission:
        """Queue rows for embedding; wait on `.future`."""
        sub = Submission(rows=rows, deadline=deadline, remaining=len(rows), priority=BULK if priority else INTERACTIVE,
                         tag=tag)
        if not rows:
            sub.future.set_result(np.zeros((0, 0), dtype=np.float32))
            return sub
        queue = self._queues[BULK if priority else INTERACTIVE]
        if not priority:
            self._last_interactive = time.monotonic()
        with self._cond:
            queue.extend(_Row(sub, i) for i in range(len(rows)))
            self._cond.notify()
        return sub

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Wrap a task's tokenize-and-submit, so a forming batch may wait a moment for its rows."""
        with self._cond:
            self._incoming += 1
        try:
            yield
        finally:
            with self._cond:
                self._incoming -= 1
                self._cond.notify()

    def depth(self) -> int:
        """Rows waiting for a forward pass."""
        return len(self._queues[0]) + len(self._queues[1])

    # -- forward thread ---------------------------------------------------------------------

    def _run(self) -> None:
        idle_reported = True  # nothing ran yet: nothing to report
        while True:
            with self._cond:
                while not self._stopping and not self.depth():
                    # timeout: notice stop even if a notify is lost, and tell when work stopped coming.
                    if not self._cond.wait(timeout=IDLE_S) and not idle_reported and self._on_idle:
                        idle_reported = True
                        self._cond.release()  # the hook may take a while; submitters must not wait on it
                        try:
                            self._on_idle()
                        except Exception:  # noqa: BLE001 - housekeeping must not stop the forward thread
                            log.exception("the idle hook failed")
                        finally:
                            self._cond.acquire()
                idle_reported = False
                if self._stopping:
                    break
                self._wait_for_incoming()
                batch = self._take_batch()
            if batch:
                self._run_batch(batch)
        self._fail_all(InternalError("the worker is shutting down"))

    def _wait_for_incoming(self) -> None:
        """Shallow queue and rows on their way (caller holds the lock): let them join, briefly."""
        until = time.monotonic() + self.wait_s
        while self._incoming and self.depth() < self.max_rows and not self._stopping:
            left = until - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(timeout=left)

    def _bulk_budget(self) -> int:
        """Small bulk passes only while sync traffic is about; a job alone gets full-size passes."""
        recent = time.monotonic() - self._last_interactive < defaults.INTERACTIVE_RECENT_S
        return self.bulk_batch_tokens if recent else self.max_batch_tokens

    def _sync_saturated(self) -> bool:
        """Whether sync rows have been waiting, unbroken, for SATURATED_AFTER_S (a racy peek is fine).

        Looked at whenever a batch is formed and at every pause of a bulk pass: a sync queue seen
        empty even once starts the clock again.
        """
        now = time.monotonic()
        if not self._queues[INTERACTIVE]:
            self._sync_waiting_since = None
            return False
        if self._sync_waiting_since is None:
            self._sync_waiting_since = now
        return now - self._sync_waiting_since >= self.saturated_after_s

    def _bulk_owed(self) -> bool:
        """Sync traffic fills the worker and bulk had less than its floor of the recent forward time."""
        saturated = self._sync_saturated()  # always looked at, so the clock sees every empty queue
        return saturated and self.share.bulk_owed()

    def _take_batch(self, interactive_only: bool = False) -> list[_Row]:
        """Pick the next batch (caller holds the lock): interactive first, similar lengths together."""
        now = time.time()
        batch: list[_Row] = []
        longest = 0
        if interactive_only:
            order = (INTERACTIVE,)
        elif self._bulk_owed() and self._queues[BULK]:
            order = (BULK, INTERACTIVE)  # sync fills the worker and bulk is below its floor: bulk's turn
        else:
            order = (INTERACTIVE, BULK)
        for priority in order:
            queue = self._queues[priority]
            if batch:  # rows of the first priority found: this pass is theirs alone
                break
            budget = self.max_batch_tokens if priority == INTERACTIVE else self._bulk_budget()
            if not self.padded:
                batch = self._take_in_order(queue, budget, now)
                continue
            window = [queue.popleft() for _ in range(min(len(queue), self.max_rows * WINDOW_ROWS_FACTOR))]
            kept = set()
            # Padded: longest first, so the first row sets the batch's width and shorter ones fill it.
            ordered = sorted(window, key=lambda r: r.length, reverse=True)
            for row in ordered:
                if not self._live(row.submission, now):
                    continue
                width = max(longest, row.length)
                cost = width * (len(batch) + 1)
                # A single row longer than the whole budget still runs, alone.
                if not batch or (len(batch) < self.max_rows and cost <= budget):
                    batch.append(row)
                    longest = width
                else:
                    kept.add(id(row))
            # What did not fit goes back to the front, in arrival order, ahead of newer rows.
            queue.extendleft(reversed([row for row in window if id(row) in kept]))
        return batch

    def _take_in_order(self, queue: collections.deque, budget: int, now: float) -> list[_Row]:
        """A packed pass: rows in arrival order while they fit (caller holds the lock). Lengths cost nothing
        there, and a submission's rows finish together instead of its short rows waiting behind every
        longer row that arrives after them. Only the rows taken are looked at, each submission's state
        once: this runs on the forward thread, once per pass, and on a fast model its Python work per row
        is a share of the pass."""
        batch: list[_Row] = []
        total = 0
        last, live = None, False
        while queue and len(batch) < self.max_rows:
            row = queue[0]
            if row.submission is not last:
                last, live = row.submission, self._live(row.submission, now)
            if not live:
                queue.popleft()
                continue
            length = len(row.submission.rows[row.index])
            # A single row longer than the whole budget still runs, alone.
            if batch and total + length > budget:
                break
            batch.append(queue.popleft())
            total += length
        return batch

    def _live(self, sub: Submission, now: float) -> bool:
        """Whether a submission's rows still want a pass: not failed or expired earlier, not expired now."""
        if sub.future.done():  # failed or expired earlier: drop its rows
            return False
        if sub.expired(now):
            self._expire(sub)
            return False
        return True

    def _serve_interactive(self) -> None:
        """A bulk pass paused between layers: run the interactive rows waiting now, then go on.

        All of them, unless sync traffic fills the worker and bulk work is below its floor: then
        the bulk pass goes on at once (the rows are served at a later pause), or a steady stream of
        sync rows would hold it here forever.
        """
        now = time.monotonic()
        self.share.charge(BULK, now - self._segment_started)  # the bulk layers run since the last resume
        try:
            # A racy peek is fine: a row missed now is taken at the next pause.
            while self._queues[INTERACTIVE] and not self._bulk_owed():
                with self._cond:
                    batch = self._take_batch(interactive_only=True)
                if not batch:
                    return
                self._run_batch(batch)
        finally:
            self._segment_started = time.monotonic()

    def _run_batch(self, batch: list[_Row]) -> None:
        split = False
        rows = [r.submission.rows[r.index] for r in batch]
        bulk = batch[0].submission.priority == BULK
        outer = self.pass_started is None  # interactive passes run inside a paused bulk pass
        started = time.monotonic()
        for row in batch:
            if row.submission.pass_started is None:
                row.submission.pass_started = started
        if outer:
            self.pass_tags = frozenset(r.submission.tag for r in batch if r.submission.tag)
            self.pass_started = self._segment_started = started
        try:
            vectors = self._forward(rows, self._serve_interactive) if bulk and self.preemptible else self._forward(rows)
        except BaseException as exc:  # noqa: BLE001 - one bad batch must not kill the thread
            if not (self._is_oom(exc) and len(batch) > 1):
                log.exception("forward pass failed for %d rows", len(batch))
                for sub in {id(r.submission): r.submission for r in batch}.values():
                    _fail(sub, InternalError("the model failed on this input"))
                return
            log.warning("out of memory on a batch of %d rows; splitting and retrying", len(batch))
            split = True
        finally:
            # An outer pass is charged for its own layers only: the interactive passes run at its
            # pauses charged themselves, and `_serve_interactive` charged the layers before each pause.
            self.share.charge(BULK if bulk else INTERACTIVE,
                              time.monotonic() - (self._segment_started if outer else started))
            if outer:
                self.pass_started = None
        if split:
            # Retried only here, after the except block: the exception's traceback holds the failed
            # pass's frames and with them its activations, which the halves need the memory of.
            half = len(batch) // 2
            self._run_batch(batch[:half])
            self._run_batch(batch[half:])
            return
        if self._on_batch:
            lengths = [r.length for r in batch]
            self._on_batch(len(batch), len(batch) * max(lengths) if self.padded else sum(lengths))
        # Scattered back a run of one submission's rows at a time: a pass holds a few submissions'
        # runs, and one slice copy per run costs the forward thread far less than one per row.
        start = 0
        while start < len(batch):
            sub, first = batch[start].submission, batch[start].index
            end = start + 1
            while end < len(batch) and batch[end].submission is sub and batch[end].index == first + end - start:
                end += 1
            if not sub.future.done():
                if sub.out is None:
                    sub.out = np.empty((len(sub.rows), vectors.shape[1]), dtype=np.float32)
                sub.out[first:first + end - start] = vectors[start:end]
                sub.remaining -= end - start
                if sub.remaining == 0:
                    sub.done = time.monotonic()
                    sub.future.set_result(sub.out)
            start = end

    def _expire(self, sub: Submission) -> None:
        _fail(sub, Timeout("the request's deadline passed before its turn came"))

    def _fail_all(self, exc: Exception) -> None:
        with self._cond:
            rows = [row for queue in self._queues for row in queue]
            for queue in self._queues:
                queue.clear()
        for row in rows:
            _fail(row.submission, exc)


def _report_end(finished: Future) -> None:
    """Log the forward loop's end on the model thread when it was a crash, not a stop."""
    exc = finished.exception()
    if exc is not None:
        log.error("the forward loop stopped with an error; no more passes will run", exc_info=exc)


def _fail(sub: Submission, exc: Exception) -> None:
    if not sub.future.done():
        sub.future.set_exception(exc)
