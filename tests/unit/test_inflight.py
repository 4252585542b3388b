"""ChunksInFlight (api/inflight.py) on a real Redis: every send of a sync chunk, the first and any again.

The task ids say which send a message is (`<id>-<chunk>-<attempt>`); the dispatcher and the worker
are left out: these tests play the workers by popping messages and writing claims.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from kombu.serialization import loads

from api.inflight import ChunksInFlight, Slice
from embedserve import redis_keys
from embedserve.celery_app import make_celery
from embedserve.fleet.liveness import Liveness
from embedserve.publish import QueueFull, TaskPublisher
from embedserve.settings import Settings

DEAD_AFTER_S = 1.0  # the live worker's heartbeat must stay fresh through a test on a busy box


@pytest.fixture
def client(redis_server):
    return redis_server.client()


@pytest.fixture
def publisher(redis_server, client):
    return TaskPublisher(make_celery(Settings.from_env({"EMBED_REDIS_URL": redis_server.url})), client)


@pytest.fixture
def queue(client):
    name = f"test.inflight.{uuid.uuid4().hex}"
    yield name
    client.delete(name)


def payload(s: Slice) -> dict:
    return {"request_id": s.request_id, "reply_to": s.reply_to, "chunk": s.index, "start": s.start, "end": s.end,
            "deadline": s.deadline}


def in_flight(client, publisher, queue, slices) -> ChunksInFlight:
    return ChunksInFlight(client, Liveness(client, DEAD_AFTER_S), publisher, task="embed.run", queue=queue,
                          slices=slices, payload=payload, deadline=time.time() + 30, request_id="client-id")


def take(client, queue: str) -> list[tuple[str, dict]]:
    """Pop every queued message, oldest first, as a worker would: (task id, payload)."""
    taken = []
    while (raw := client.rpop(queue)) is not None:
        message = json.loads(raw)
        args, _, _ = loads(base64.b64decode(message["body"]), message["content-type"], message["content-encoding"],
                             accept=["application/x-msgpack"])
        taken.append((message["headers"]["id"], args[0]))
    return taken


def test_the_first_send_puts_every_chunk_on_the_queue_as_attempt_0(client, publisher, queue):
    flight = in_flight(client, publisher, queue, [(0, 16), (16, 20)])
    flight.send(max_depth=0)
    taken = take(client, queue)
    assert [task_id.rsplit("-", 2)[1:] for task_id, _ in taken] == [["0", "0"], ["1", "0"]]
    assert [(body["chunk"], body["start"], body["end"]) for _, body in taken] == [(0, 0, 16), (1, 16, 20)]
    assert {body["reply_to"] for _, body in taken} == {flight.reply_key}
    assert {body["request_id"] for _, body in taken} == {"client-id"}
    assert len(flight) == 2


def test_a_full_queue_refuses_the_whole_request_and_sends_nothing(client, publisher, queue):
    flight = in_flight(client, publisher, queue, [(0, 16), (16, 32)])
    client.lpush(queue, "someone else's", "and another")
    with pytest.raises(QueueFull):
        flight.send(max_depth=1)
    assert client.llen(queue) == 2
    assert flight.rescue(set()) == 0  # nothing went out, so nothing is sent again


def test_a_chunk_whose_worker_died_is_sent_again_as_its_next_attempt(client, publisher, queue):
    flight = in_flight(client, publisher, queue, [(0, 16), (16, 32), (32, 40)])
    flight.send(max_depth=0)
    take(client, queue)
    claims = redis_keys.reply_claims(flight.reply_key)
    Liveness(client, DEAD_AFTER_S).beat("live-worker", "m")
    client.hset(claims, mapping={"0": "dead-worker", "1": "live-worker", "2": "dead-worker"})

    assert flight.rescue(answered={2}) == 1  # chunk 2 died with its worker but was answered already
    [(task_id, body)] = take(client, queue)
    assert task_id.rsplit("-", 2)[1:] == ["0", "1"] and body["chunk"] == 0
    assert sorted(client.hkeys(claims)) == [b"1", b"2"]  # the dead claim went; the next holder writes its own

    client.hset(claims, "0", "dead-worker")  # the second holder died too
    assert flight.rescue(answered={2}) == 1
    [(task_id, _)] = take(client, queue)
    assert task_id.rsplit("-", 2)[1:] == ["0", "2"]


def test_a_chunk_taken_and_never_started_is_sent_again_after_the_dead_after_time(client, publisher, queue):
    flight = in_flight(client, publisher, queue, [(0, 16), (16, 32)])
    flight.send(max_depth=0)
    assert flight.rescue(set()) == 0  # both still queued
    take(client, queue)  # taken, never claimed
    assert flight.rescue(set()) == 0  # first seen gone: its taker may yet start it
    time.sleep(DEAD_AFTER_S * 1.5)
    assert flight.rescue({1}) == 1
    [(task_id, _)] = take(client, queue)
    assert task_id.rsplit("-", 2)[1:] == ["0", "1"]


def test_drop_deletes_the_reply_list_and_the_claims(client, publisher, queue):
    flight = in_flight(client, publisher, queue, [(0, 1)])
    flight.send(max_depth=0)
    client.rpush(flight.reply_key, b"reply")
    client.hset(redis_keys.reply_claims(flight.reply_key), "0", "worker")
    flight.drop()
    assert not client.exists(flight.reply_key, redis_keys.reply_claims(flight.reply_key))
