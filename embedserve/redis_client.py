"""Redis connections that cannot hang: the worker's client and the Celery broker's options.

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
publishes with its own client) gets the same socket settings through `broker_transport_options`,
but no retry: kombu reconnects the consumer itself.
"""

from __future__ import annotations

import socket

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from embedserve.jobs.scheduler import IDLE_WAIT_S

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


def worker_client(url: str, **overrides) -> redis.Redis:
    """The client a worker process shares between its threads (see the module docstring)."""
    return redis.Redis.from_url(url, **{**connection_options(), **overrides})


def broker_socket_options() -> dict:
    """Socket options for kombu's Redis transport (`broker_transport_options`); kombu passes them to redis-py."""
    return {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(),
        "health_check_interval": BROKER_HEALTH_CHECK_INTERVAL_S,
    }
