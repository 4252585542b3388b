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
from collections.abc import Callable
from dataclasses import dataclass

import redis
from celery import Celery, signals

from embedserve import defaults
from embedserve.celery_app import make_celery
from embedserve.fleet.forward_stats import ForwardStats
from embedserve.fleet.liveness import Liveness, Reaper
from embedserve.fleet.registry import CardConflict, Heartbeat
from embedserve.jobs.data import JobData
from embedserve.jobs.records import JobRecords
from embedserve.jobs.scheduler import Scheduler
from embedserve.jobs.store import Store, StoreError, open_store
from embedserve.jobs.store.identity import check_identity
from embedserve.jobs.sweeper import Sweeper
from embedserve.logs import configure_logging
from embedserve.protocol import RERANK_TASK, TOKENIZE_TASK, RerankChunk, TokenizeChunk, interactive_queue, rerank_queue
from embedserve.redis_client import worker_client
from embedserve.redis_policy import check_cache_policy, check_eviction_policy
from embedserve.settings import ConfigError, Settings, WorkerRole, redact_url
from worker.drain import Drain
from worker.model_thread import ModelThread
from worker.watchdog import TEST_HANG_ENV, Watchdog, hang_on

log = logging.getLogger("embedserve.worker")


# Seconds the start-up check of the cache Redis waits for its answers (longer than a request's lookups).
CACHE_CHECK_TIMEOUT_S = 5.0
# Celery loggers that write a line for every task received and finished, at INFO.
PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


def quiet_per_task_logs(level: str) -> None:
    """Keep Celery's per-task lines for DEBUG: at INFO they cost two formatted writes per request."""
    if level != "DEBUG":
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


class StartupError(Exception):
    """Why this worker cannot start: printed as one line, exit status 2 (no traceback)."""


@dataclass
class Loaded:
    """The model this worker serves and what serving it needs from outside the process."""

    settings: Settings
    client: redis.Redis
    store: Store | None  # the job store (embedding workers only: rerankers take no bulk work)
    model: object  # an Engine or a Reranker
    forward: Callable
    name: str
    aliases: tuple[str, ...]
    model_thread: ModelThread  # loaded the model; runs every forward (see worker/model_thread.py)


@dataclass
class Wired:
    """The started parts of a worker around its Celery consumer, in the order they stop."""

    app: Celery
    queue: str
    worker_id: str
    batcher: object
    forward_stats: ForwardStats
    reaper: Reaper
    sweeper: Sweeper | None
    drain: Drain
    bulk: object | None  # BulkSlots, for embedding workers


def main(argv: list[str] | None = None) -> int:
    """Start one worker process serving one model; returns the exit code."""
    try:
        loaded = load(configure(sys.argv[1:] if argv is None else argv))
        wired = wire(loaded)
    except StartupError as exc:
        print(f"embedserve worker: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C before Celery took over its signals (it drains on them from then on). A load still running
        # on the model thread ends with the process: that thread is a daemon.
        print("embedserve worker: interrupted before serving", file=sys.stderr)
        return 130
    run(loaded.settings, wired)
    return 0


def configure(argv: list[str]) -> tuple[Settings, redis.Redis]:
    """Settings from the environment and a checked Redis connection (and cache Redis, when one is set)."""
    try:
        settings = Settings.from_env()
        if "--rerank" in argv:
            settings = dataclasses.replace(settings, worker_role=WorkerRole.RERANK.value)
            settings.validate()
    except ConfigError as exc:
        raise StartupError(f"configuration error: {exc}") from None
    configure_logging(settings.log_level, json_format=settings.log_json)
    quiet_per_task_logs(settings.log_level)
    # timeouts, keepalive, health checks, retries; through the sentinels for a sentinel:// URL
    client = worker_client(settings.redis_url, sentinel_password=settings.redis_sentinel_password)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StartupError(f"cannot reach Redis at {settings!r}: {exc}") from None
    problem = check_eviction_policy(client)
    if problem:
        raise StartupError(problem)
    if settings.cache_url and settings.worker_role == WorkerRole.EMBED:
        check_cache(settings, client)
    return settings, client


def check_cache(settings: Settings, client: redis.Redis) -> None:
    """Refuse a cache Redis that would not evict or that is the broker's; one that does not answer is only
    warned about: a cache that is down means computing, at start as later (worker/cache/vector_cache.py)."""
    from worker.cache.vector_cache import cache_client

    cache = cache_client(settings.cache_url, timeout=CACHE_CHECK_TIMEOUT_S)
    try:
        problem = check_cache_policy(cache, client)
    except redis.RedisError as exc:
        log.warning("the embedding cache's Redis (EMBED_CACHE_URL=%s) does not answer (%s); computing every input "
                    "until it does", redact_url(settings.cache_url), exc)
        return
    finally:
        cache.close()
    if problem:
        raise StartupError(problem)


def load(configured: tuple[Settings, redis.Redis]) -> Loaded:
    """Check the job store, then load the model (the slow step, so it comes after every cheap check)."""
    settings, client = configured
    from worker import memory  # imported here, not at module top: torch takes seconds to import

    memory.limit_arenas()  # before the model's threads and Celery's start allocating
    rerank = settings.worker_role == WorkerRole.RERANK
    store = None
    if not rerank:
        # Before the model loads: a worker whose store is not the API's must not start at all.
        try:
            store = open_store(settings.job_store)
            check_identity(store, client, timeout=0)  # no claim yet: this worker's store is the reference
        except StoreError as exc:
            raise StartupError(str(exc)) from None
    model_thread = ModelThread()
    try:
        if rerank:
            from worker.rerank.loading import load_reranker

            model = model_thread.call(load_reranker, settings)
            return Loaded(settings, client, store, model, model.score_batch, settings.served_rerank_name,
                          settings.served_rerank_aliases, model_thread)
        from worker.engine import load_engine

        model = model_thread.call(load_engine, settings)
    except ConfigError as exc:
        raise StartupError(f"configuration error: {exc}") from None
    forward = model.embed_batch
    hang_text = os.environ.get(TEST_HANG_ENV)
    if hang_text:
        forward = hang_on(forward, model.tokenize([hang_text], offset=0, input_type="document", instruction=None,
                                                  truncate=True).rows[0])
    return Loaded(settings, client, store, model, forward, settings.served_model_name, settings.served_aliases,
                  model_thread)


def wire(loaded: Loaded) -> Wired:
    """Start the batcher, the task handlers, the bulk slots and the housekeeping around the model."""
    import torch

    from worker import memory
    from worker.batcher import Batcher
    from worker.tasks import register_tasks
    from worker.token_budget import gpu_token_budget

    settings, client, model, name = loaded.settings, loaded.client, loaded.model, loaded.name
    app = make_celery(settings)
    padded = getattr(model, "pads_batches", True)
    batch_tokens = settings.batch_tokens(model.device.type, packed=not padded, gpu_budget=gpu_token_budget(model))
    # A GPU pass is short even when full; on CPU a bulk pass is kept small so sync rows wait little.
    # (Rerankers take no bulk work, so for them this bound never applies.)
    bulk_tokens = settings.bulk_batch_tokens or (
        batch_tokens if model.device.type == "cuda" else defaults.CPU_BULK_BATCH_TOKENS)
    forward_stats = ForwardStats(client, name)
    if settings.worker_role != WorkerRole.RERANK:  # before the batcher's loop takes the model thread for good
        probe_rate(loaded)
    batcher = Batcher(loaded.forward, max_batch_tokens=batch_tokens, bulk_batch_tokens=bulk_tokens,
                      is_oom=lambda exc: isinstance(exc, torch.cuda.OutOfMemoryError),
                      on_batch=forward_stats.record, padded=padded,
                      on_idle=memory.release_free_memory, preemptible=not padded,
                      bulk_min_share=settings.bulk_min_share, on_forward_seconds=forward_stats.record_seconds,
                      model_thread=loaded.model_thread)
    batcher.start()
    forward_stats.start()
    worker_id = f"{name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    liveness = Liveness(client, settings.worker_dead_after)
    # WAITs for replicas after each chunk's count when configured (EMBED_REDIS_WAIT_REPLICAS)
    scheduler = Scheduler(client, wait_replicas=settings.redis_wait_replicas, wait_timeout_ms=settings.redis_wait_timeout_ms)
    bulk = None
    if settings.worker_role == WorkerRole.RERANK:
        from worker.rerank.service import RerankService

        register_tasks(app, RerankService(model, batcher), client, worker_id, name=RERANK_TASK,
                       payload_type=RerankChunk)
        queue = rerank_queue(name)
    else:
        from embedserve.fleet.quant_ranges import RangeBook
        from embedserve.jobs.compaction import Compactor
        from worker.bulk_slots import BulkSlots
        from worker.chunk_runner import ChunkRunner
        from worker.embedding_service import EmbeddingService

        service = EmbeddingService(model, batcher, RangeBook(client, model.card(name, loaded.aliases)),
                                   max_windows=settings.max_windows, cache=open_cache(settings, model, forward_stats),
                                   cache_scope=settings.cache_scope)
        register_tasks(app, service, client, worker_id)
        # Celery's task threads take sync work only; job chunks come through `bulk` (see worker/bulk_slots.py).
        records, data = JobRecords(client, defaults.JOB_ERROR_SAMPLE), JobData(loaded.store)
        runner = ChunkRunner(records, scheduler, data, service, worker_id=worker_id,
                             max_attempts=settings.max_attempts, time_limit=settings.task_time_limit,
                             stages=forward_stats.stages)
        compactor = Compactor(records, scheduler, data, worker_id)
        bulk = BulkSlots(scheduler, name, worker_id, runner.run, compactor.compact, settings.bulk_slots,
                         stages=forward_stats.stages)
        queue = interactive_queue(name)
    from worker.tokenize_service import TokenizeService

    # /tokenize and /detokenize come on the same queue, whatever the model's kind.
    register_tasks(app, TokenizeService(model), client, worker_id, name=TOKENIZE_TASK, payload_type=TokenizeChunk)

    heartbeat = Heartbeat(client, worker_id, model.card(name, loaded.aliases), dead_after=settings.worker_dead_after)
    try:
        heartbeat.start()  # refuses a card that disagrees with the one this model's live workers announced
    except CardConflict as exc:
        raise StartupError(str(exc)) from None
    reaper = Reaper(liveness)
    reaper.start()
    # Workers sweep expired job data too (the API does as well, so expiry needs neither alone).
    sweeper = None
    if loaded.store:
        sweeper = Sweeper(JobRecords(client, defaults.JOB_ERROR_SAMPLE), JobData(loaded.store), client)
        sweeper.start()
    Watchdog(batcher, settings.task_time_limit, liveness, scheduler, worker_id, name).start()
    drain = Drain(liveness, worker_id, name, timeout=settings.drain_timeout, heartbeat=heartbeat, bulk=bulk)
    signals.worker_shutting_down.connect(lambda **_: drain.start(), weak=False)
    if bulk:
        bulk.start()
    log.info("serving %s %s (aliases: %s) as %s", settings.worker_role, name, ", ".join(loaded.aliases) or "none",
             worker_id)
    return Wired(app, queue, worker_id, batcher, forward_stats, reaper, sweeper, drain, bulk)


def probe_rate(loaded: Loaded) -> None:
    """The model's first bulk rate, when Redis knows none yet (worker/rate_probe.py), on the model thread."""
    from worker.rate_probe import probe_bulk_rate

    try:
        loaded.model_thread.call(probe_bulk_rate, loaded.client, loaded.name, loaded.model, loaded.forward)
    except Exception as exc:  # noqa: BLE001 - it only sizes chunks: never a reason not to serve
        log.warning("could not probe the bulk rate (new jobs keep the small chunks): %s", exc)


def open_cache(settings: Settings, model, forward_stats: ForwardStats):
    """The embedding cache for `model` (a VectorCache), or None without EMBED_CACHE_URL."""
    if not settings.cache_url:
        return None
    from worker.cache.fingerprint import model_fingerprint
    from worker.cache.vector_cache import VectorCache, cache_client

    # The forward's arithmetic as resolved (EMBED_DETERMINISTIC auto means on or off by device).
    fingerprint = model_fingerprint(model.source, dtype=str(model.dtype), device_type=model.device.type,
                                    deterministic=bool(getattr(model, "deterministic", False)))
    log.info("embedding cache on (scope: %s), model fingerprint %s", settings.cache_scope, fingerprint)
    return VectorCache(cache_client(settings.cache_url), fingerprint, model.dim, count=forward_stats.record_cache)


def run(settings: Settings, wired: Wired) -> None:
    """Consume the model's queue until Celery stops, then drain and stop every part."""
    try:
        wired.app.worker_main([
            "worker", "--pool", "threads", "--concurrency", str(settings.worker_concurrency),
            "--queues", wired.queue,
            "--hostname", f"{settings.worker_role}-{os.getpid()}@{socket.gethostname()}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", settings.log_level,
        ])
    finally:
        wired.drain.start()  # no-op when Celery's shutdown signal started it
        if wired.bulk:
            wired.bulk.drain(settings.drain_timeout)
        wired.drain.finish()
        wired.reaper.stop()
        if wired.sweeper:
            wired.sweeper.stop()
        wired.batcher.stop()
        wired.forward_stats.stop()
