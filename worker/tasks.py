"""Celery task definitions: thin glue from a message to the service and back to the caller."""

from __future__ import annotations

import logging
import time

import redis
from celery import Celery

from embedserve import defaults
from embedserve.jobs import JobStore
from embedserve.logs import request_context
from embedserve.protocol import EMBED_TASK, JOB_CHUNK_TASK, ChunkResult, EmbedChunk, bulk_queue
from embedserve.settings import Settings
from worker.jobs import ChunkRunner
from worker.service import EmbeddingService

log = logging.getLogger("embedserve.worker.tasks")


def register_tasks(app: Celery, service, client: redis.Redis, *, name: str = EMBED_TASK,
                   payload_type: type = EmbedChunk) -> None:
    """Attach this worker's sync task to `app`: `service.run` of each `payload_type` message, replied to its caller."""

    @app.task(name=name, ignore_result=True)
    def run_chunk(payload: dict) -> None:
        chunk = payload_type.from_wire(payload)
        with request_context(chunk.request_id):  # every log line about this chunk carries the API's id
            if time.time() > chunk.deadline:
                log.info("chunk %d skipped: its caller stopped waiting", chunk.chunk)
                return  # the caller has gone (timed out): do not spend a forward pass on it
            started = time.monotonic()
            result = service.run(chunk)
            send_reply(client, chunk.reply_to, result)
            log.info("chunk %d: %d rows, %d tokens, status %d in %.1f ms", chunk.chunk, result.rows,
                     result.tokens, result.status, (time.monotonic() - started) * 1000)



def job_runner(app: Celery, service: EmbeddingService, client: redis.Redis, settings: Settings) -> ChunkRunner:
    """The runner of bulk-job chunks, for the bulk consumer (worker/bulk.py)."""

    def requeue(job_id: str, index: int, model: str) -> None:
        app.send_task(JOB_CHUNK_TASK, args=[job_id, index], queue=bulk_queue(model))

    return ChunkRunner(JobStore(client, defaults.JOB_ERROR_SAMPLE), service, max_attempts=settings.max_attempts,
                       time_limit=settings.task_time_limit, requeue=requeue)


def send_reply(client: redis.Redis, key: str, result: ChunkResult) -> None:
    """Push one chunk's result to the caller's reply list, which expires if nobody reads it."""
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, result.pack())
    pipe.expire(key, defaults.REPLY_TTL_S)
    pipe.execute()
