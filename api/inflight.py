"""One sync request's chunks in the air: who holds each, and sending again what a dead worker held.

A worker writes its id into the request's claims hash when it starts a chunk (worker/tasks.py).
Every `check_every` seconds of waiting, the request looks at its unanswered chunks:
- claimed by a worker that is no longer alive (embedserve/fleet/liveness.py, on Redis's clock): sent
  again at once;
- claimed by nobody and no longer in the queue: a worker took the message off the queue and has
  not started it. A live worker starts what it takes within milliseconds (it prefetches no more
  than it has threads), so when that lasts past the dead-after time the taker died in between:
  sent again.
A chunk answered twice counts once: the caller keeps the first reply per chunk number.
"""

from __future__ import annotations

import time
from typing import Callable

import redis

from embedserve import redis_keys
from embedserve.fleet.liveness import Liveness
from embedserve.queues import queue_lists


class InFlight:
    """The messages of one request, by chunk, and the rescue of those whose worker died."""

    def __init__(self, client: redis.Redis, liveness: Liveness, queue: str, reply_key: str,
                 message: Callable[[int, int], str], chunks: int, resend: Callable[[list[str]], None]):
        self._redis = client
        self._liveness = liveness
        self._queue = queue
        self._reply_key = reply_key
        self._message = message  # (chunk, attempt) -> message text
        self._publish = resend  # pushes messages onto the queue, no depth check: this work was admitted
        self.sent = {chunk: message(chunk, 0) for chunk in range(chunks)}
        self._attempts = dict.fromkeys(range(chunks), 0)
        self._unseen_since: dict[int, float] = {}  # chunk -> when it was first found neither queued nor claimed

    def rescue(self, answered: set[int]) -> int:
        """Send again every unanswered chunk whose holder is gone; returns how many were sent."""
        waiting = [c for c in self.sent if c not in answered]
        if not waiting:
            return 0
        claims = {int(c): w.decode() for c, w in self._redis.hgetall(redis_keys.reply_claims(self._reply_key)).items()}
        holders = sorted({claims[c] for c in waiting if c in claims})
        alive = self._liveness.alive(holders) if holders else {}
        lost = [c for c in waiting if c in claims and not alive.get(claims[c], True)]
        now = time.monotonic()
        for chunk in (c for c in waiting if c not in claims):
            if self._queued(self.sent[chunk]):
                self._unseen_since.pop(chunk, None)
            elif now - self._unseen_since.setdefault(chunk, now) > self._liveness.dead_after:
                lost.append(chunk)
        for chunk in lost:
            self._send_again(chunk)
        return len(lost)

    def _queued(self, message: str) -> bool:
        """Whether the message still waits in the queue (any priority list)."""
        pipe = self._redis.pipeline(transaction=False)
        for name in queue_lists(self._queue):
            pipe.lpos(name, message)
        return any(position is not None for position in pipe.execute())

    def _send_again(self, chunk: int) -> None:
        self._attempts[chunk] += 1
        self._unseen_since.pop(chunk, None)
        # Drop the dead claim first: the next worker to take the chunk writes its own.
        self._redis.hdel(redis_keys.reply_claims(self._reply_key), str(chunk))
        self.sent[chunk] = self._message(chunk, self._attempts[chunk])
        self._publish([self.sent[chunk]])
