"""Task messages written by TaskPublisher are the ones send_task writes, and a full queue sends nothing."""

from __future__ import annotations

import json

import pytest

from embedserve.celery_app import make_celery
from embedserve.publish import QueueFull, TaskPublisher
from embedserve.settings import Settings

# Fields that differ between any two messages (ids, clocks, host names) or only name the sender.
VOLATILE_HEADERS = ("expires", "origin", "argsrepr")
VOLATILE_PROPERTIES = ("delivery_tag", "reply_to")


@pytest.fixture
def publisher_and_app(redis_server):
    app = make_celery(Settings.from_env({"EMBED_REDIS_URL": redis_server.url}))
    return TaskPublisher(app, redis_server.client()), app


def comparable(raw: bytes | str) -> dict:
    message = json.loads(raw)
    for name in VOLATILE_HEADERS:
        message["headers"].pop(name)
    for name in VOLATILE_PROPERTIES:
        message["properties"].pop(name)
    return message


def test_a_published_message_is_the_one_send_task_writes(redis_server, publisher_and_app):
    publisher, app = publisher_and_app
    client = redis_server.client()
    args = [{"inputs": ["a text", "another"], "blob": b"\x00\x01"}]
    app.send_task("embed.run", args=args, queue="test.publish.celery", expires=30, task_id="task-1")
    publisher.publish("test.publish.ours", [publisher.message("embed.run", args, "test.publish.ours",
                                                              task_id="task-1", expires_s=30)])
    theirs = comparable(client.rpop("test.publish.celery"))
    ours = comparable(client.rpop("test.publish.ours"))
    theirs["properties"]["delivery_info"]["routing_key"] = "test.publish.ours"
    assert ours == theirs
    assert client.llen("test.publish.ours") == 0  # exactly one message was pushed


def test_a_full_queue_refuses_and_pushes_nothing(redis_server, publisher_and_app):
    publisher, _ = publisher_and_app
    client = redis_server.client()
    queue = "test.publish.full"
    message = publisher.message("embed.run", [{}], queue)
    publisher.publish(queue, [message, message], max_depth=1)  # 0 queued: both go, in one call
    assert client.llen(queue) == 2
    with pytest.raises(QueueFull) as refused:
        publisher.publish(queue, [message], max_depth=1)
    assert refused.value.depth == 2
    assert client.llen(queue) == 2
    publisher.publish(queue, [message], max_depth=0)  # no limit
    assert client.llen(queue) == 3
    client.delete(queue)
