"""`python -m worker` / `embedserve worker [--rerank]`: load one model, then consume its queues.

A worker process serves exactly one model: EMBED_MODEL by default, EMBED_RERANK_MODEL with
`--rerank` (or EMBED_WORKER_ROLE=rerank). A deployment serving both runs both kinds of worker.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import uuid

import redis

from embedserve import defaults
from embedserve.batch_stats import BatchStats
from embedserve.celery_app import make_celery
from embedserve.logs import configure_logging
from embedserve.protocol import RERANK_TASK, RerankChunk, bulk_queue, interactive_queue, rerank_queue
from embedserve.registry import Heartbeat
from embedserve.settings import ConfigError, Settings, WorkerRole
from embedserve.startup import check_eviction_policy

log = logging.getLogger("embedserve.worker")


# Celery loggers that write a line for every task received and finished, at INFO.
PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


def quiet_per_task_logs(level: str) -> None:
    """Keep Celery's per-task lines for DEBUG: at INFO they cost two formatted writes per request."""
    if level != "DEBUG":
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Start one worker process serving one model; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = Settings.from_env()
        if "--rerank" in argv:
            settings = dataclasses.replace(settings, worker_role=WorkerRole.RERANK.value)
            settings.validate()
    except ConfigError as exc:
        print(f"embedserve worker: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json_format=settings.log_json)
    quiet_per_task_logs(settings.log_level)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        print(f"embedserve worker: cannot reach Redis at {settings!r}: {exc}", file=sys.stderr)
        return 2
    problem = check_eviction_policy(client)
    if problem:
        print(f"embedserve worker: {problem}", file=sys.stderr)
        return 2

    # Imported here, not at module top: torch takes seconds to import and `--help` should not wait.
    from worker import memory
    from worker.batcher import Batcher
    from worker.tasks import job_runner, register_tasks
    import torch

    memory.limit_arenas()  # before the model's threads and Celery's start allocating
    app = make_celery(settings)
    bulk = None
    if settings.worker_role == WorkerRole.RERANK:
        from worker.rerank_engine import load_reranker
        from worker.rerank_service import RerankService

        try:
            model = load_reranker(settings)
        except ConfigError as exc:
            print(f"embedserve worker: configuration error: {exc}", file=sys.stderr)
            return 2
        forward, name, aliases = model.score_batch, settings.served_rerank_name, settings.served_rerank_aliases
    else:
        from worker.engine import load_engine

        model = load_engine(settings)
        forward, name, aliases = model.embed_batch, settings.served_model_name, settings.served_aliases
    padded = getattr(model, "pads_batches", True)  # rerankers always pad
    batch_tokens = settings.batch_tokens(model.device.type, packed=not padded)
    # A GPU pass is short even when full; on CPU a bulk pass is kept small so sync rows wait little.
    # (Rerankers take no bulk work, so for them this bound never applies.)
    bulk_tokens = settings.bulk_batch_tokens or (
        batch_tokens if model.device.type == "cuda" else defaults.CPU_BULK_BATCH_TOKENS)
    batch_stats = BatchStats(client, name)
    batcher = Batcher(forward, max_batch_tokens=batch_tokens, bulk_batch_tokens=bulk_tokens,
                      is_oom=lambda exc: isinstance(exc, torch.cuda.OutOfMemoryError),
                      on_batch=batch_stats.record, padded=padded,
                      on_idle=memory.release_free_memory, preemptible=not padded)
    batcher.start()
    batch_stats.start()
    if settings.worker_role == WorkerRole.RERANK:
        register_tasks(app, RerankService(model, batcher), client, name=RERANK_TASK, payload_type=RerankChunk)
        queue = rerank_queue(name)
    else:
        from worker.bulk import BulkConsumer
        from worker.service import EmbeddingService

        service = EmbeddingService(model, batcher)
        register_tasks(app, service, client)
        # Celery's task threads take sync work only; job chunks come through `bulk` (see worker/bulk.py).
        bulk = BulkConsumer(app, bulk_queue(name), job_runner(app, service, client, settings).run,
                            settings.bulk_slots)
        queue = interactive_queue(name)

    worker_id = f"{name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    heartbeat = Heartbeat(client, worker_id, model.card(name, aliases))
    heartbeat.start()
    if bulk:
        bulk.start()
    log.info("serving %s %s (aliases: %s) as %s", settings.worker_role, name, ", ".join(aliases) or "none", worker_id)
    try:
        app.worker_main([
            "worker", "--pool", "threads", "--concurrency", str(settings.worker_concurrency),
            "--queues", queue,
            "--hostname", f"{settings.worker_role}-{os.getpid()}@{socket.gethostname()}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", settings.log_level,
        ])
    finally:
        if bulk:
            bulk.stop()
        heartbeat.stop()
        batcher.stop()
        batch_stats.stop()
    return 0
