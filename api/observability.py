"""Request ids, request metrics and GET /metrics (Prometheus text format).

Per-request counters and latency histograms use prometheus_client in multiprocess mode:
gunicorn runs several processes, each writes its samples to files in PROMETHEUS_MULTIPROC_DIR
(api/server.py makes a fresh one), and /metrics adds them up, so one scrape sees all processes
without a Redis write per request. State that lives in Redis anyway (queue depths, live
workers, the workers' forward-pass statistics) is read from Redis at scrape time, so it is the
same whichever API process or replica answers. That part is cached for REDIS_GAUGES_CACHE_S
per process, so scrapes arriving together (several Prometheus servers, a dashboard, anyone who
can reach the port) cost one set of Redis round trips rather than one each.

With EMBED_METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>` (Prometheus:
`authorization: {credentials: ...}` in the scrape config); anything else is a 401 in the
OpenAI error shape like every other error here. Prometheus only looks at the status of a failed
scrape, so the JSON body costs it nothing and tells a person with curl what is missing.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
import time
import uuid

import redis
from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api import stage_account
from api.context import EXTENSION
from api.errors import error_response
from embedserve import defaults, queues
from embedserve.apikeys import key_digest
from embedserve.errors import AuthenticationFailed
from embedserve.events.outbox import Outbox
from embedserve.fleet import forward_stats, stage_times
from embedserve.fleet.registry import Registry
from embedserve.jobs.records import JobRecords
from embedserve.jobs.scheduler import Scheduler
from embedserve.logs import reset_request_id, set_request_id

REQUEST_ID_HEADER = "x-request-id"
# A client-sent id is kept when it looks like an id (no spaces or control characters, bounded).
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
# Seconds one process serves the Redis-derived gauges from memory: a scrape interval is 15 s or
# more, so a second of staleness is invisible to Prometheus and caps what a burst of scrapes costs.
REDIS_GAUGES_CACHE_S = 1.0
METRICS_TOKEN_EXTENSION = "embedserve.metrics_token"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# Not registered in prometheus_client's global registry: /metrics builds the registry it serves.
REQUESTS = Counter("embedserve_http_requests_total", "HTTP requests by route, method and status.",
                   ["route", "method", "status"], registry=None)
LATENCY = Histogram("embedserve_http_request_duration_seconds", "HTTP request latency by route and method.",
                    ["route", "method"], buckets=LATENCY_BUCKETS, registry=None)

bp = Blueprint("metrics", __name__)
access_log = logging.getLogger("embedserve.api.access")


class RedisStateCollector:
    """Queue depth per queue, live workers per model and batch statistics, read from Redis at most
    once per `cache_seconds` (the families built then are served until it passes)."""

    def __init__(self, client: redis.Redis, registry: Registry | None = None,
                 cache_seconds: float = REDIS_GAUGES_CACHE_S):
        self._redis = client
        self._registry = registry or Registry(client, cache_seconds=0)
        self._jobs = JobRecords(client)
        self._outbox = Outbox(client)
        self._scheduler = Scheduler(client)
        self._cache_seconds = cache_seconds
        self._cached: tuple[float, list] | None = None
        # One reader at a time: scrapes that arrive while Redis is being read wait for that result.
        self._lock = threading.Lock()

    def collect(self):
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self._cache_seconds:
                families = self._cached[1]
            else:
                families = list(self._read())  # a Redis error propagates (503) and caches nothing
                self._cached = (time.monotonic(), families)
        yield from families

    def _read(self):
        depth = GaugeMetricFamily("embedserve_queue_depth", "Task chunks waiting in a model's queue (Redis lists).",
                                  labels=["model", "queue", "redis_list"])
        workers = GaugeMetricFamily("embedserve_live_workers", "Workers with a fresh heartbeat, per model.",
                                    labels=["model"])
        rows = HistogramMetricFamily("embedserve_batch_rows", "Rows (inputs) per forward pass.", labels=["model"])
        tokens = HistogramMetricFamily("embedserve_batch_padded_tokens", "Padded tokens per forward pass.",
                                       labels=["model"])
        # Busy time of the workers' forward threads: its rate over the live workers is how full they are
        # (another autoscaling signal), and the split shows what the bulk floor (EMBED_BULK_MIN_SHARE) gives jobs.
        seconds = CounterMetricFamily("embedserve_forward_seconds", "Seconds workers' forward threads spent on "
                                      "passes, by priority (interactive: sync requests; bulk: jobs).",
                                      labels=["model", "priority"])
        # What an autoscaler should watch: chunks waiting plus chunks held, so it never scales in under a job.
        bulk = GaugeMetricFamily("embedserve_bulk_chunks", "Bulk-job chunks of a model: waiting, or held by a worker.",
                                 labels=["model", "state"])
        # Where a path's time goes, stage by stage (embedserve/fleet/stage_times.py): with items, seconds per input.
        stages = HistogramMetricFamily("embedserve_bulk_stage_seconds", "Seconds per stage of a job chunk in the "
                                       "workers (claim, read, tokenize, forward, write, finish, compact).",
                                       labels=["model", "stage"])
        # The embedding cache (EMBED_CACHE_URL): inputs served from it, inputs computed, cache calls that failed.
        cache = {outcome: CounterMetricFamily(f"embedserve_cache_{outcome}", text, labels=["model"])
                 for outcome, text in (("hits", "Inputs whose vector came from the embedding cache."),
                                       ("misses", "Inputs looked for in the embedding cache and computed."),
                                       ("errors", "Embedding-cache calls that failed (down, timeout, full); "
                                                  "their inputs were computed."))}
        stage_items = CounterMetricFamily("embedserve_bulk_inputs", "Job inputs the workers embedded.",
                                          labels=["model"])
        for served in self._registry.models():
            name = served.card.name
            workers.add_metric([name], served.live_workers)
            for kind, queue in queues.model_queues(name, served.card.kind).items():
                depth.add_metric([name, kind, queue], queues.depth(self._redis, queue))
            if served.card.kind != "rerank":
                backlog = self._scheduler.backlog(name)
                bulk.add_metric([name, "waiting"], backlog.waiting)
                bulk.add_metric([name, "running"], backlog.running)
            stats = forward_stats.read(self._redis, name)
            rows.add_metric([name], _cumulative(stats.rows, defaults.BATCH_ROWS_BUCKETS), stats.rows_sum)
            tokens.add_metric([name], _cumulative(stats.tokens, defaults.BATCH_TOKENS_BUCKETS), stats.tokens_sum)
            for priority in ("interactive", "bulk"):
                seconds.add_metric([name, priority], stats.seconds.get(priority, 0.0))
            for outcome, family in cache.items():
                family.add_metric([name], stats.cache.get(outcome, 0))
            histograms, items = stage_times.read(self._redis, name)
            for (path, stage), histogram in sorted(histograms.items()):
                if path == stage_times.BULK:
                    stages.add_metric([name, stage], _cumulative(histogram.buckets, stage_times.BUCKETS),
                                      histogram.sum)
            stage_items.add_metric([name], items.get(stage_times.BULK, 0.0))
        # Per-status sorted sets kept by the job store's scripts: one ZCOUNT each, not a scan of jobs.
        jobs = GaugeMetricFamily("embedserve_jobs", "Live jobs (native and batch-backed) by status.",
                                 labels=["status"])
        for status, count in self._jobs.count_by_status().items():
            jobs.add_metric([status], count)
        # Webhook deliveries, counted fleet-wide by the senders' scripts (embedserve/events/outbox.py).
        counts = self._outbox.counts()
        delivered = CounterMetricFamily("embedserve_webhook_deliveries", "Webhook events a receiver accepted (2xx).")
        delivered.add_metric([], counts["delivered"])
        failed = CounterMetricFamily("embedserve_webhook_failed_attempts", "Webhook delivery attempts that failed "
                                     "(non-2xx, timeout, refused connection, refused address); each is retried.")
        failed.add_metric([], counts["failed"])
        given_up = CounterMetricFamily("embedserve_webhook_given_up", "Webhook events given up after "
                                       "EMBED_WEBHOOK_RETRY_HOURS of failed attempts.")
        given_up.add_metric([], counts["given_up"])
        pending = GaugeMetricFamily("embedserve_webhook_pending", "Webhook events not yet delivered nor given up.")
        pending.add_metric([], self._outbox.pending())
        yield from (depth, workers, rows, tokens, seconds, *cache.values(), bulk, stages, stage_items, jobs, delivered,
                    failed, given_up, pending)


def _cumulative(counts: dict[str, int], bounds: tuple) -> list[tuple[str, int]]:
    total, out = 0, []
    for bound in (*map(str, bounds), "+Inf"):
        total += counts.get(bound, 0)
        out.append((bound, total))
    return out


def init_app(app: Flask, client: redis.Redis) -> None:
    """Request ids and request metrics on every response; GET /metrics."""
    settings = app.extensions[EXTENSION].settings if EXTENSION in app.extensions else None
    # Every known model (catalogued or declared), read afresh per scrape: one with 0 workers shows 0.
    registry = Registry.from_settings(client, settings, cache_seconds=0) if settings else None
    app.extensions["embedserve.metrics"] = RedisStateCollector(client, registry)
    token = settings.metrics_token if settings else ""
    # Only the digest is kept: comparing digests takes the same time whatever the sent value's length.
    app.extensions[METRICS_TOKEN_EXTENSION] = key_digest(token) if token else None
    app.register_blueprint(bp)

    @app.before_request
    def _start():
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = sent if _CLIENT_ID_RE.match(sent) else uuid.uuid4().hex
        g.request_id_token = set_request_id(g.request_id)
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        rid = g.get("request_id")
        if rid is None:  # a response made before _start ran (should not happen): still give it an id
            rid = uuid.uuid4().hex
        response.headers[REQUEST_ID_HEADER] = rid
        # The URL rule, not the path: unknown paths must not create a label value each.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        if "request_started" in g:
            stage_account.observe(g.request_started)
            elapsed = time.perf_counter() - g.request_started
            LATENCY.labels(route, request.method).observe(elapsed)
            access_log.info("%s %s %d %.1fms", request.method, request.path, response.status_code, elapsed * 1000)
        return response

    @app.teardown_request
    def _forget(_exc):
        token = g.pop("request_id_token", None)
        if token is not None:
            reset_request_id(token)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format: this API's requests (all processes) and the cluster state in Redis."""
    from flask import current_app

    expected = current_app.extensions.get(METRICS_TOKEN_EXTENSION)
    if expected is not None and not _bearer_matches(request.headers.get("Authorization", ""), expected):
        response = error_response(AuthenticationFailed(
            "GET /metrics needs the EMBED_METRICS_TOKEN as `Authorization: Bearer <token>`.",
            code="invalid_metrics_token"))
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:  # a single process (e.g. the app built outside gunicorn): its own in-memory values
        registry.register(REQUESTS)
        registry.register(LATENCY)
        registry.register(stage_account.STAGE_SECONDS)
    registry.register(current_app.extensions["embedserve.metrics"])
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _bearer_matches(header: str, expected_digest: bytes) -> bool:
    """`Bearer <token>` (scheme in any case) whose token hashes to `expected_digest`, compared in constant time."""
    scheme, _, sent = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(key_digest(sent.strip()), expected_digest)
