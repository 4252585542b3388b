"""Celery task messages written straight onto a queue's Redis list, in one round trip.

`celery.send_task` goes through kombu's Producer: a retry wrapper, a new Redis client object
for every message, a repr of the arguments for the headers, and the API asked for the queue's
depth (backpressure) in a round trip of its own before that. py-spy on the API under 32
one-text clients put send_task and the depth check at about a third of the API's Python time.

The message here is still Celery's own: headers, properties and body from `app.amqp.as_task_v2`
(task protocol 2), the body serialized by kombu as msgpack, wrapped in kombu's Redis envelope
(base64 body, delivery info, delivery tag), so a stock Celery worker consumes it unchanged
(tests/integration/test_publish.py compares it with what send_task writes). Only the transport is
ours: one Lua script checks the depth and pushes, atomically, so a full queue refuses before
anything is sent and two API processes cannot both slip past the limit.
"""

from __future__ import annotations

import base64
import json
import uuid

import redis
from celery import Celery
from kombu.serialization import dumps as serialize

from embedserve.queues import queue_lists

# KEYS: the queue's lists (priority 0 first). ARGV: max depth (0 = no limit), then the messages.
# Returns -1 when pushed, else the depth that refused them.
_PUSH_UNLESS_FULL = """
local limit = tonumber(ARGV[1])
if limit > 0 then
  local depth = 0
  for i = 1, #KEYS do depth = depth + redis.call('LLEN', KEYS[i]) end
  if depth > limit then return depth end
end
for i = 2, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end
return -1
"""


class QueueFull(Exception):
    """The queue held more than the limit; nothing was sent."""

    def __init__(self, depth: int):
        super().__init__(f"{depth} messages queued")
        self.depth = depth


class TaskPublisher:
    """Builds Celery task messages and pushes them onto a queue; thread-safe."""

    def __init__(self, app: Celery, client: redis.Redis):
        self._amqp = app.amqp
        self._serializer = app.conf.task_serializer
        self._push = client.register_script(_PUSH_UNLESS_FULL)

    def message(self, task: str, args: list, queue: str, *, task_id: str | None = None,
                expires_s: float | None = None) -> str:
        """One task message for `queue`, as kombu's Redis transport stores it."""
        task_id = task_id or str(uuid.uuid4())
        # argsrepr is only shown in Celery's own logs; a repr of a whole request's texts is not worth its CPU.
        headers, properties, body, _ = self._amqp.as_task_v2(task_id, task, args=args, expires=expires_s,
                                                             argsrepr=f"<{task} for {queue}>", kwargsrepr="{}",
                                                             ignore_result=None)  # as send_task sends it
        content_type, content_encoding, data = serialize(body, serializer=self._serializer)
        if expires_s is not None:  # what send_task sets too (kombu's Redis transport does not act on it)
            properties["expiration"] = str(int(expires_s * 1000))
        properties.update(delivery_mode=2, delivery_info={"exchange": "", "routing_key": queue}, priority=0,
                          body_encoding="base64", delivery_tag=str(uuid.uuid4()))
        return json.dumps({"body": base64.b64encode(data).decode(), "content-encoding": content_encoding,
                           "content-type": content_type, "headers": headers, "properties": properties})

    def publish(self, queue: str, messages: list[str], *, max_depth: int = 0) -> None:
        """Push `messages` (in order) onto `queue`, or raise QueueFull when it holds over `max_depth`."""
        depth = self._push(keys=queue_lists(queue), args=[max_depth, *messages])
        if depth >= 0:
            raise QueueFull(depth)
