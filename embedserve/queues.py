"""The Redis lists behind a Celery queue, so the API and /metrics can read a queue's depth."""

from __future__ import annotations

import redis
from kombu.transport.redis import Channel

from embedserve.protocol import interactive_queue, rerank_queue


def queue_lists(queue: str) -> list[str]:
    """kombu keeps one list per priority step: `queue` for priority 0, `queue<sep><step>` for others."""
    return [queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in Channel.priority_steps]


def depth(client: redis.Redis, queue: str) -> int:
    """Messages (task chunks) waiting in a queue, all priority steps together."""
    pipe = client.pipeline(transaction=False)
    for name in queue_lists(queue):
        pipe.llen(name)
    return sum(pipe.execute())


def model_queues(model: str, kind: str = "embedding") -> dict[str, str]:
    """The Celery queue of one served model, by role (bulk work is the scheduler's, not a queue's)."""
    if kind == "rerank":
        return {"rerank": rerank_queue(model)}
    return {"interactive": interactive_queue(model)}
