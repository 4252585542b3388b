"""A sync chunk's claim overlaps its work: the forward does not wait for Redis to answer the claim."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from embedserve import redis_keys
from embedserve.protocol import ChunkResult, EmbedChunk
from embedserve.redis_client import worker_client
from worker.tasks import run_sync_chunk

PAUSE_MS = 400


class StartClock:
    """A service that notes when its work began and answers one row."""

    FAILURE = "failed"

    def __init__(self):
        self.started: float | None = None

    def run(self, chunk):
        self.started = time.monotonic()
        return ChunkResult(chunk=chunk.chunk, rows=1)


@pytest.fixture
def client(redis_server):
    return worker_client(redis_server.url)  # the worker's own client: its pool, timeouts and retries


def chunk(reply_to: str) -> EmbedChunk:
    return EmbedChunk(request_id="r", reply_to=reply_to, chunk=2, offset=0, inputs=["a"], deadline=time.time() + 60)


def test_the_work_starts_before_redis_answers_the_claim_and_the_reply_follows_the_claim(redis_server, client):
    reply_to = redis_keys.reply(uuid.uuid4().hex)
    service = StartClock()
    redis_server.client().execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")  # writes wait; the claim is one
    paused = time.monotonic()
    run_sync_chunk(service, client, "worker-a", chunk(reply_to))
    assert service.started - paused < PAUSE_MS / 1000 / 2  # it did not wait out the pause first
    assert client.hget(redis_keys.reply_claims(reply_to), "2") == b"worker-a"
    assert ChunkResult.unpack(client.lpop(reply_to)).rows == 1


def test_a_claim_redis_refuses_fails_the_chunk_and_sends_no_reply(client):
    reply_to = redis_keys.reply(uuid.uuid4().hex)
    client.set(redis_keys.reply_claims(reply_to), "not a hash")  # HSET on it is a WRONGTYPE error
    with pytest.raises(redis.ResponseError):
        run_sync_chunk(StartClock(), client, "worker-a", chunk(reply_to))
    assert client.llen(reply_to) == 0
    assert client.ping()  # the connection that read the error is usable again (or was replaced)
