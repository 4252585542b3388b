"""Celery task definitions: thin glue from a message to the service and back to the caller."""

from __future__ import annotations

import time

import redis
from celery import Celery

from embedserve import defaults
from embedserve.jobs import JobStore
from embedserve.protocol import EMBED_TASK, JOB_CHUNK_TASK, ChunkResult, EmbedChunk, bulk_queue
from embedserve.settings import Settings
from worker.jobs import ChunkRunner
from worker.service import EmbeddingService


def register_tasks(app: Celery, service: EmbeddingService, client: redis.Redis, settings: Settings) -> ChunkRunner:
    """Attach this worker's tasks to `app`; returns the job-chunk runner for the bulk consumer."""

    @app.task(name=EMBED_TASK, ignore_result=True)
    def embed(payload: dict) -> None:
        chunk = EmbedChunk.from_wire(payload)
        if time.time() > chunk.deadline:
            return  # the caller has gone (timed out): do not spend a forward pass on it
        send_reply(client, chunk.reply_to, service.run(chunk))

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
