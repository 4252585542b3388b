"""`python -m worker` / `embedserve worker`: load the model, then consume its queues."""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid

import redis

from embedserve import defaults
from embedserve.celery_app import make_celery
from embedserve.logs import configure_logging
from embedserve.protocol import bulk_queue, interactive_queue
from embedserve.registry import Heartbeat
from embedserve.settings import ConfigError, Settings

log = logging.getLogger("embedserve.worker")


def main() -> int:
    """Start one worker process serving one model; returns the exit code."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"embedserve worker: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        print(f"embedserve worker: cannot reach Redis at {settings!r}: {exc}", file=sys.stderr)
        return 2

    # Imported here, not at module top: torch takes seconds to import and `--help` should not wait.
    from worker.batcher import Batcher
    from worker.bulk import BulkConsumer
    from worker.engine import load_engine
    from worker.service import EmbeddingService
    from worker.tasks import register_tasks
    import torch

    engine = load_engine(settings)
    # A GPU pass is short even when full; on CPU a bulk pass is kept small so sync rows wait little.
    bulk_tokens = settings.bulk_batch_tokens or (
        settings.max_batch_tokens if engine.device.type == "cuda" else defaults.CPU_BULK_BATCH_TOKENS)
    batcher = Batcher(engine.embed_batch, max_batch_tokens=settings.max_batch_tokens, bulk_batch_tokens=bulk_tokens,
                      is_oom=lambda exc: isinstance(exc, torch.cuda.OutOfMemoryError))
    batcher.start()
    app = make_celery(settings)
    runner = register_tasks(app, EmbeddingService(engine, batcher), client, settings)
    bulk = BulkConsumer(app, bulk_queue(settings.served_model_name), runner.run, settings.bulk_slots)

    name = settings.served_model_name
    worker_id = f"{name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    heartbeat = Heartbeat(client, worker_id, engine.card(name, settings.served_aliases))
    heartbeat.start()
    bulk.start()
    log.info("serving %s (aliases: %s) as %s", name, ", ".join(settings.served_aliases) or "none", worker_id)
    try:
        app.worker_main([
            "worker", "--pool", "threads", "--concurrency", str(settings.worker_concurrency),
            # Celery's task threads take sync work only; job chunks come through `bulk` (see worker/bulk.py).
            "--queues", interactive_queue(name),
            "--hostname", f"embed-{os.getpid()}@{socket.gethostname()}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", settings.log_level,
        ])
    finally:
        bulk.stop()
        heartbeat.stop()
        batcher.stop()
    return 0
