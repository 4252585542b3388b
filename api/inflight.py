"""One sync request's chunks on the wire: every send of each, the first and again when its worker died.

The dispatcher (api/dispatch.py) cuts a request into slices and waits on its reply list; it never
sends. Every send happens here, so one place decides what a send is (the queue, the payload, the
reply key, the task id with its attempt number) and one place counts a chunk's sends.

Why a chunk is sent again: workers die (SIGKILL, OOM, a lost host) with chunks in hand, and the
broker would hand those back only after its visibility timeout. A worker writes its id into the
request's claims hash when it starts a chunk (worker/tasks.py). Every `check_every` seconds of
waiting, the dispatcher asks `rescue` to look at the unanswered chunks:
- claimed by a worker that is no longer alive (embedserve/fleet/liveness.py, on Redis's clock): sent
  again at once;
- claimed by nobody and no longer in the queue: a worker took the message off the queue and has
  not started it. A live worker starts what it takes within milliseconds (it prefetches no more
  than it has threads), so when that lasts past the dead-after time the taker died in between:
  sent again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis

from embedserve import redis_keys
from embedserve.fleet.liveness import Liveness
from embedserve.publish import TaskPublisher
from embedserve.queues import queue_lists


@dataclass(frozen=True)
class Slice:
    """What a chunk's payload builder gets: where the chunk's reply goes and which inputs it holds."""

    request_id: str
    reply_to: str
    index: int
    start: int
    end: int
    deadline: float


class ChunksInFlight:
    """The chunks of one sync request: the message each was last sent as, how often each was sent,
    and the reply list and claims hash their workers write to."""

    def __init__(self, client: redis.Redis, liveness: Liveness, publisher: TaskPublisher, *, task: str, queue: str,
                 slices: list[tuple[int, int]], payload: Callable[[Slice], dict], deadline: float,
                 request_id: str | None = None):
        self._redis = client
        self._liveness = liveness
        self._publisher = publisher
        self._task = task
        self._queue = queue
        self._slices = slices  # chunk number -> (start, end) of its inputs
        self._payload = payload
        self.deadline = deadline  # wall clock: the workers compare it with their own time
        # The reply list and the task ids use a fresh id, so two requests sent with the same
        # x-request-id never mix; that id (or this one) travels in the chunks for the workers' logs.
        self._id = uuid.uuid4().hex
        self._request_id = request_id or self._id
        self.reply_key = redis_keys.reply(self._id)
        self._claims_key = redis_keys.reply_claims(self.reply_key)
        self._sent: dict[int, str] = {}  # chunk -> its latest message, to find it in the queue
        self._sends = dict.fromkeys(range(len(slices)), 0)  # chunk -> times sent; the next send's attempt number
        self._sent_wall: dict[int, float] = {}  # chunk -> when its latest send was pushed (wall clock)
        self._unseen_since: dict[int, float] = {}  # chunk -> when it was first found neither queued nor claimed
        # A few looks per dead-after time: a dead holder is found within about that time.
        self.check_every = max(0.5, liveness.dead_after / 5)

    def __len__(self) -> int:
        return len(self._slices)

    def send(self, max_depth: int) -> None:
        """Send every chunk, in one round trip that first checks the queue's depth (backpressure,
        EMBED_MAX_QUEUE; 0 = none): raises QueueFull with nothing sent, so a request is refused whole or sent whole."""
        self._send(range(len(self._slices)), max_depth)

    def rescue(self, answered: set[int]) -> int:
        """Send again every unanswered chunk whose holder is gone; returns how many were sent."""
        waiting = [c for c in self._sent if c not in answered]
        if not waiting:
            return 0
        claims = {int(c): w.decode() for c, w in self._redis.hgetall(self._claims_key).items()}
        holders = sorted({claims[c] for c in waiting if c in claims})
        alive = self._liveness.alive(holders) if holders else {}
        lost = [c for c in waiting if c in claims and not alive.get(claims[c], True)]
        now = time.monotonic()
        for chunk in (c for c in waiting if c not in claims):
            if self._queued(self._sent[chunk]):
                self._unseen_since.pop(chunk, None)
            elif now - self._unseen_since.setdefault(chunk, now) > self._liveness.dead_after:
                lost.append(chunk)
        if lost:
            for chunk in lost:
                self._unseen_since.pop(chunk, None)
            # Drop the dead claims first: the next worker to take a chunk writes its own.
            self._redis.hdel(self._claims_key, *map(str, lost))
            self._send(lost)  # no depth check: this work was admitted
        return len(lost)

    def sent_at(self, chunk: int) -> float:
        """When the chunk's latest send was pushed (wall clock): its round trip starts there."""
        return self._sent_wall[chunk]

    def drop(self) -> None:
        """Delete the reply list and the claims hash once nobody waits on them; a late reply expires (REPLY_TTL_S)."""
        self._redis.delete(self.reply_key, self._claims_key)

    def _send(self, chunks: Iterable[int], max_depth: int = 0) -> None:
        """Push the next message of each of `chunks` in one round trip; a send counts once it was pushed."""
        messages = {chunk: self._message(chunk) for chunk in chunks}
        self._publisher.publish(self._queue, list(messages.values()), max_depth=max_depth)
        pushed = time.time()
        self._sent.update(messages)
        self._sent_wall.update(dict.fromkeys(messages, pushed))
        for chunk in messages:
            self._sends[chunk] += 1

    def _message(self, chunk: int) -> str:
        """The Celery message of the chunk's next send; its task id carries the attempt number."""
        start, end = self._slices[chunk]
        body = self._payload(Slice(self._request_id, self.reply_key, chunk, start, end, self.deadline))
        return self._publisher.message(self._task, [body], self._queue,
                                       task_id=f"{self._id}-{chunk}-{self._sends[chunk]}",
                                       expires_s=max(1.0, self.deadline - time.time()))

    def _queued(self, message: str) -> bool:
        """Whether the message still waits in the queue (any priority list)."""
        pipe = self._redis.pipeline(transaction=False)
        for name in queue_lists(self._queue):
            pipe.lpos(name, message)
        return any(position is not None for position in pipe.execute())
