"""`python -m api` / `embedserve api`: check settings and Redis, then serve with gunicorn."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time

import redis
from gunicorn.app.base import BaseApplication

from embedserve.apikeys import KeyStore
from embedserve.events import url_safety
from embedserve.logs import configure_logging
from embedserve.redis_client import client_for
from embedserve.redis_policy import check_eviction_policy
from embedserve.settings import ConfigError, Settings

log = logging.getLogger("embedserve.api")

# Seconds the API waits for Redis at start (compose may start it a moment later).
REDIS_WAIT_S = 30


class _Server(BaseApplication):
    """gunicorn with threads: every waiting sync request holds a thread, not a process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        self.cfg.set("bind", f"{s.host}:{s.port}")
        self.cfg.set("workers", s.api_workers)
        # gunicorn's gthread worker, with its own refusals (URI too long, bad HTTP) as JSON errors.
        self.cfg.set("worker_class", "api.gunicorn_worker.JsonErrorWorker")
        self.cfg.set("threads", s.api_threads)
        # A request may legitimately wait the whole sync timeout; gunicorn must not kill it first.
        self.cfg.set("timeout", int(s.sync_timeout) + 30)
        self.cfg.set("graceful_timeout", int(s.sync_timeout) + 5)
        self.cfg.set("keepalive", 75)
        self.cfg.set("loglevel", s.log_level.lower())
        self.cfg.set("child_exit", _child_exit)

    def load(self):
        from api import memory

        memory.prepare()  # in each server process, before anything there imports pyarrow
        from api.app import create_app  # after fork: each server process gets its own connections

        return create_app(self.settings)


def _child_exit(_server, worker) -> None:
    """A server process ended: fold its metric files so live gauges do not count it (prometheus_client)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def prepare_metrics_dir() -> str:
    """An empty PROMETHEUS_MULTIPROC_DIR for this server's processes (stale files would add old counts)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
    else:
        path = tempfile.mkdtemp(prefix="embedserve-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def check_startup(settings: Settings) -> str | None:
    """Why the API cannot start with these settings, or None."""
    client = client_for(settings, socket_connect_timeout=2)
    deadline = time.monotonic() + REDIS_WAIT_S
    while True:
        try:
            client.ping()
            break
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                return f"cannot reach Redis ({exc}); check EMBED_REDIS_URL"
            time.sleep(0.5)
    problem = check_eviction_policy(client)
    if problem is None and not settings.api_keys and not KeyStore(client).list():
        # Not fatal: in compose the operator creates the first key with `embedserve keys create`
        # against the running stack; refusing would only put the API in a restart loop.
        log.warning("no API keys yet: every request gets 401 until EMBED_API_KEYS is set or a key is "
                    "created with `embedserve keys create --name NAME`")
    if problem is None and settings.webhook_url:
        problem = _webhook_problem(settings)
    return problem


def _webhook_problem(settings: Settings) -> str | None:
    """EMBED_WEBHOOK_URL is refused at start when it resolves to an address webhooks may not reach; a name
    that does not resolve yet is only warned of (every attempt checks again)."""
    try:
        url_safety.resolve(settings.webhook_url, settings.webhook_allow_private)
    except url_safety.Unresolvable as exc:
        log.warning("EMBED_WEBHOOK_URL: %s; events wait and are retried", exc)
    except url_safety.UnsafeURL as exc:
        return f"EMBED_WEBHOOK_URL refused: {exc}"
    return None


def main() -> int:
    """Serve until stopped; returns the exit code."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"embedserve api: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json_format=settings.log_json)
    problem = check_startup(settings)
    if problem:
        print(f"embedserve api: {problem}", file=sys.stderr)
        return 2
    # Before gunicorn forks and before anything imports prometheus_client: it picks its mode at import.
    prepare_metrics_dir()
    _Server(settings).run()
    return 0
