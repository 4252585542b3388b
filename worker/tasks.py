"""Celery task definitions: thin glue from a message to the service and back to the caller.

The services raise their refusals and failures; `answer` is the one place a sync chunk's error
becomes the reply its caller sees.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import redis
from celery import Celery

from embedserve import defaults, redis_keys
from embedserve.errors import InternalError, ServiceError
from embedserve.logs import request_context
from embedserve.protocol import EMBED_TASK, ChunkResult, EmbedChunk
from worker import stage_clock

log = logging.getLogger("embedserve.worker.tasks")


def register_tasks(app: Celery, service, client: redis.Redis, worker_id: str, *, name: str = EMBED_TASK,
                   payload_type: type = EmbedChunk) -> None:
    """Attach this worker's sync task to `app`: `service.run` of each `payload_type` message, replied to its caller."""

    @app.task(name=name, ignore_result=True)
    def run_chunk(payload: dict) -> None:
        chunk = payload_type.from_wire(payload)
        with request_context(chunk.request_id):  # every log line about this chunk carries the API's id
            if time.time() > chunk.deadline:
                log.info("chunk %d skipped: its caller stopped waiting", chunk.chunk)
                return  # the caller has gone (timed out): do not spend a forward pass on it
            with stage_clock.timing() as clock:
                claim(client, chunk.reply_to, chunk.chunk, worker_id)
                clock.claim_done()
                result = answer(service, chunk)
                result = replace(result, stages=clock.stages())
            send_reply(client, chunk.reply_to, result)
            log.info("chunk %d: %d rows, %d tokens, status %d in %.1f ms", chunk.chunk, result.rows,
                     result.tokens, result.status, (time.time() - clock.picked_wall) * 1000)


def answer(service, chunk) -> ChunkResult:
    """`service.run(chunk)`, with any error turned into the error reply for the caller."""
    try:
        return service.run(chunk)
    except ServiceError as exc:
        return ChunkResult(chunk=chunk.chunk, error=exc.to_payload(), status=exc.status)
    except Exception:  # noqa: BLE001 - report a bug to the caller without its internals
        log.exception("chunk %s/%d failed", chunk.request_id, chunk.chunk)
        exc = InternalError(service.FAILURE)
        return ChunkResult(chunk=chunk.chunk, error=exc.to_payload(), status=exc.status)


def claim(client: redis.Redis, reply_to: str, chunk: int, worker_id: str) -> None:
    """Say which worker holds a sync chunk, so the waiting API can send it again if this worker dies."""
    pipe = client.pipeline(transaction=False)
    pipe.hset(redis_keys.reply_claims(reply_to), str(chunk), worker_id)
    pipe.expire(redis_keys.reply_claims(reply_to), defaults.REPLY_TTL_S)
    pipe.execute()


def send_reply(client: redis.Redis, key: str, result: ChunkResult) -> None:
    """Push one chunk's result to the caller's reply list, which expires if nobody reads it."""
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, result.pack())
    pipe.expire(key, defaults.REPLY_TTL_S)
    pipe.execute()
