"""`python -m worker` / `embedserve worker`: load the model, then consume its queues."""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid

import redis

from embedserve.celery_app import make_celery
from embedserve.logs import configure_logging
from embedserve.protocol import bulk_queue, interactive_queue
from embedserve.registry import Heartbeat
from embedserve.settings import ConfigError, Settings

log = logging.getLogger("embedserve.worker")


# Celery loggers that write a line for every task received and finished, at INFO.
PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


def quiet_per_task_logs(level: str) -> None:
    """Keep Celery's per-task lines for DEBUG: at INFO they cost two formatted writes per request."""
    if level != "DEBUG":
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def main() -> int:
    """Start one worker process serving one model; returns the exit code."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"embedserve worker: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    quiet_per_task_logs(settings.log_level)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        print(f"embedserve worker: cannot reach Redis at {settings!r}: {exc}", file=sys.stderr)
        return 2

    # Imported here, not at module top: torch takes seconds to import and `--help` should not wait.
    from worker.batcher import Batcher
    from worker.engine import load_engine
    from worker.service import EmbeddingService
    from worker.tasks import register_tasks
    import torch

    engine = load_engine(settings)
    batcher = Batcher(engine.embed_batch, max_batch_tokens=settings.batch_tokens(engine.device.type),
                      is_oom=lambda exc: isinstance(exc, torch.cuda.OutOfMemoryError))
    batcher.start()
    app = make_celery(settings)
    register_tasks(app, EmbeddingService(engine, batcher), client)

    name = settings.served_model_name
    worker_id = f"{name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    heartbeat = Heartbeat(client, worker_id, engine.card(name, settings.served_aliases))
    heartbeat.start()
    log.info("serving %s (aliases: %s) as %s", name, ", ".join(settings.served_aliases) or "none", worker_id)
    try:
        app.worker_main([
            "worker", "--pool", "threads", "--concurrency", str(settings.worker_concurrency),
            # Interactive first: with the priority strategy kombu polls the queues in this order.
            "--queues", f"{interactive_queue(name)},{bulk_queue(name)}",
            "--hostname", f"embed-{os.getpid()}@{socket.gethostname()}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", settings.log_level,
        ])
    finally:
        heartbeat.stop()
        batcher.stop()
    return 0
