"""Redis connections: one factory for every client (plain or through Sentinel), hang-proof options
for the worker's client, and the Celery broker's URL and options.

`connect` (or `client_for(settings)`) turns EMBED_REDIS_URL into a client, for the API, the
workers and the CLI alike. A redis://, rediss:// or unix:// URL gives `redis.Redis.from_url`'s
client, as before. A sentinel:// URL (embedserve/settings.py: `parse_sentinel_url`) gives a client
of the master that redis-py's Sentinel support finds: each new connection asks the sentinels for
the current master, and a connection that finds its server demoted (READONLY) is dropped, so after
a failover the next command (a retry included) goes to the new master. The URL's user and password
are the master's; the sentinels' own password is EMBED_REDIS_SENTINEL_PASSWORD. Celery's consumer
gets the same through kombu's sentinel:// transport (`broker_url`, `broker_sentinel_options`).

A worker shares one Redis client between its heartbeat thread, its reaper, its bulk slots (a
claim script, then a BLPOP of `scheduler.IDLE_WAIT_S`), the sync reply path and its batch
statistics. Without a socket timeout, one half-open connection (Redis failed over, a NAT or
firewall dropped the flow, a host vanished without a FIN) blocks the thread using it forever: a
stuck heartbeat makes the worker look dead to everyone else while it still holds work. So:

- every read and write times out after `SOCKET_TIMEOUT_S`, a few seconds above the longest
  blocking command a worker sends (the bulk slots' BLPOP; redis-py does not lengthen the socket
  timeout for blocking commands);
- a connection error or timeout is retried `RETRIES` times with exponential backoff, each try on
  a fresh connection, so one dead socket costs one timeout rather than an error; the threads that
  use the client still catch `redis.RedisError` for outages longer than that;
- TCP keepalive probes (`KEEPALIVE_OPTIONS`) find a dead idle connection within ~25 s, and a
  pooled connection idle for `HEALTH_CHECK_INTERVAL_S` is PINGed before it is used again.

A timed-out command may still have run on the server (a paused or slow Redis), and a retried one
may run twice. Worker writes are built for that: replies are keyed by chunk (the API keeps the
first), job chunks count once, and a bulk slot whose claim failed hands back whatever it holds
without running it (worker/bulk_slots.py).

The broker connection (kombu's Redis transport, used only by a worker's Celery consumer; the API
publishes with its own client, embedserve/publish.py) gets the same socket settings through
`broker_transport_options`, but no retry: kombu reconnects the consumer itself.
"""

from __future__ import annotations

import socket
from urllib.parse import quote

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from embedserve.jobs.scheduler import IDLE_WAIT_S
from embedserve.settings import Settings, parse_sentinel_url

# Seconds any one Redis read or write may take: the longest blocking command plus 4 s.
SOCKET_TIMEOUT_S = IDLE_WAIT_S + 4
CONNECT_TIMEOUT_S = 5.0
# A pooled connection idle for longer is PINGed before use (0 would turn the check off).
HEALTH_CHECK_INTERVAL_S = 10
# Tries after the first, on a connection error or timeout, each after an exponential backoff
# (0.2 s, then 0.4 s; capped at 2 s). redis-py's health check PING has the same retries, nested in
# a command's, so a Redis that answers nothing costs a call at most (RETRIES + 1)² socket timeouts
# (~45 s) before it raises; every thread then carries on with its own loop.
RETRIES = 2
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
# kombu's own BRPOP/pub-sub health checks run at this interval too; its BRPOP is dropped once its
# reply is overdue by brpop_timeout (1 s) + this, so keep it above a short Redis stall.
BROKER_HEALTH_CHECK_INTERVAL_S = 10


def keepalive_options() -> dict[int, int]:
    """TCP keepalive: first probe after 10 s idle, then every 5 s, dead after 3 unanswered (where supported)."""
    options = {}
    idle = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)  # macOS names it so
    for name, value in ((idle, 10), (getattr(socket, "TCP_KEEPINTVL", None), 5),
                        (getattr(socket, "TCP_KEEPCNT", None), 3)):
        if name is not None:
            options[name] = value
    return options


def retry_policy() -> Retry:
    """Retry a connection error or timeout RETRIES times, with exponential backoff (fresh Retry per client)."""
    return Retry(ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), RETRIES)


def connection_options() -> dict:
    """Keyword arguments for redis-py's `Redis.from_url` (or a connection pool) that make it hang-proof."""
    return {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(),
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry": retry_policy(),
        "retry_on_timeout": True,
    }


# Seconds one question to one sentinel may take (which is the master?); the next sentinel is asked after.
SENTINEL_TIMEOUT_S = 2.0


def connect(url: str, *, sentinel_password: str = "", **options) -> redis.Redis:
    """A client of the Redis `url` names: redis://, rediss://, unix:// or sentinel:// (the current master).

    `options` are redis-py's connection keywords (timeouts, retry, pool size...); they apply to the
    master's connections. The sentinels are asked with short timeouts, `sentinel_password` if set."""
    if not url.startswith("sentinel://"):
        return redis.Redis.from_url(url, **options)
    where = parse_sentinel_url(url)
    sentinels = Sentinel(list(where.sentinels), sentinel_kwargs=sentinel_options(sentinel_password))
    login = {k: v for k, v in (("username", where.username), ("password", where.password)) if v is not None}
    return sentinels.master_for(where.master, db=where.db, **login, **options)


def client_for(settings: Settings, **options) -> redis.Redis:
    """`connect` for EMBED_REDIS_URL and EMBED_REDIS_SENTINEL_PASSWORD: how every process gets its client."""
    return connect(settings.redis_url, sentinel_password=settings.redis_sentinel_password, **options)


def sentinel_options(password: str = "") -> dict:
    """Connection keywords for the sentinels themselves (not the master): short timeouts, their password."""
    options = {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S,
               "socket_keepalive": True}
    if password:
        options["password"] = password
    return options


def worker_client(url: str, *, sentinel_password: str = "", **overrides) -> redis.Redis:
    """The client a worker process shares between its threads (see the module docstring)."""
    return connect(url, sentinel_password=sentinel_password, **{**connection_options(), **overrides})


def broker_url(settings: Settings) -> str:
    """Celery's broker URL: EMBED_REDIS_URL, or for a sentinel:// one kombu's form of it (one URL per
    sentinel, joined by ';', each with the master's login and database; the master's name goes in
    `broker_sentinel_options`)."""
    if not settings.redis_url.startswith("sentinel://"):
        return settings.redis_url
    where = parse_sentinel_url(settings.redis_url)
    login = ""
    if where.username is not None or where.password is not None:
        login = quote(where.username or "", safe="")
        if where.password is not None:
            login += ":" + quote(where.password, safe="")
        login += "@"
    hosts = [f"[{host}]" if ":" in host else host for host, _ in where.sentinels]
    return ";".join(f"sentinel://{login}{host}:{port}/{where.db}" for host, (_, port) in zip(hosts, where.sentinels))


def broker_sentinel_options(settings: Settings) -> dict:
    """kombu's sentinel transport options (`broker_transport_options`): the master's name and how to
    talk to the sentinels; empty for a plain Redis URL."""
    if not settings.redis_url.startswith("sentinel://"):
        return {}
    return {"master_name": parse_sentinel_url(settings.redis_url).master,
            "sentinel_kwargs": sentinel_options(settings.redis_sentinel_password)}


def broker_socket_options() -> dict:
    """Socket options for kombu's Redis transport (`broker_transport_options`); kombu passes them to redis-py."""
    return {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(),
        "health_check_interval": BROKER_HEALTH_CHECK_INTERVAL_S,
    }
