"""The Celery app both sides build: the API to send tasks by name, workers to run them."""

from __future__ import annotations

import redis
from celery import Celery
from kombu.transport import redis as kombu_redis

from embedserve import defaults
from embedserve.redis_client import broker_sentinel_options, broker_socket_options, broker_url
from embedserve.settings import Settings


class _RestoreSafeChannel(kombu_redis.Channel):
    """kombu's Redis channel, made to survive losing Redis with unacknowledged messages in hand.

    When Celery's consumer loses the broker (Redis restarted, or failed over under Sentinel) it
    `collect()`s the connection, which detaches the transport from it, then closes the connection,
    which closes the channel, which restores the unacknowledged messages it had delivered (our
    acks_late tasks running then) through a new connection pool built from the transport's
    connection details, now None: an AttributeError that is not a connection error, so Celery
    calls it unrecoverable and the worker shuts down. Raising a connection error instead lets
    Celery reconnect; the messages stay in kombu's unacked set on Redis, restored by its sweep
    once the visibility timeout passes (a sync request waiting for one has timed out by then).
    """

    def _connparams(self, asynchronous=False):
        _check_attached(self)
        return super()._connparams(asynchronous=asynchronous)


class _RestoreSafeSentinelChannel(kombu_redis.SentinelChannel):
    """kombu's sentinel channel with `_RestoreSafeChannel`'s repair."""

    def _connparams(self, asynchronous=False):
        _check_attached(self)
        return super()._connparams(asynchronous=asynchronous)


def _check_attached(channel) -> None:
    if channel.connection.client is None:
        raise redis.ConnectionError("the broker connection is closed already; its messages stay unacked in Redis")


class _NamedTransport(type):
    """Transport classes that print as their URL scheme (kombu writes the class into `as_uri()`, Celery logs it)."""

    def __str__(cls) -> str:
        return cls.scheme


class RedisTransport(kombu_redis.Transport, metaclass=_NamedTransport):
    """kombu's redis:// transport with `_RestoreSafeChannel`."""

    scheme = "redis"
    Channel = _RestoreSafeChannel


class SentinelTransport(kombu_redis.SentinelTransport, metaclass=_NamedTransport):
    """kombu's sentinel:// transport (the master's address from the sentinels) with the same repair."""

    scheme = "sentinel"
    Channel = _RestoreSafeSentinelChannel


def make_celery(settings: Settings) -> Celery:
    """A Celery app on the settings' Redis, configured for at-least-once, idempotent tasks."""
    # A sentinel:// EMBED_REDIS_URL becomes kombu's sentinel transport (the master's name in the options).
    app = Celery("embedserve", broker=broker_url(settings), set_as_current=False)
    app.conf.update(
        task_serializer="msgpack",
        accept_content=["msgpack"],
        # Results go to our own reply lists and job keys, not Celery's result backend.
        task_ignore_result=True,
        result_backend=None,
        # A task is acknowledged after it ran, and handed to another worker if its worker dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # Check interactive queues first: kombu BRPOPs the queues in this order.
            "queue_order_strategy": "priority",
            # A worker that died (SIGKILL) leaves its messages unacknowledged; kombu hands them
            # back once they are older than the visibility timeout, but only when a sweep runs.
            # By default a sweep scans every 10th 10 s tick (~100 s); scan every tick instead,
            # and tick at most every quarter of the visibility timeout.
            "unacked_restore_interval": max(1, min(defaults.UNACKED_RESTORE_INTERVAL_S,
                                                   settings.visibility_timeout // 4)),
            "unacked_restore_throttle": 1,
            # Each sweep holds a Redis mutex that expires after 300 s by default; a worker killed
            # mid-sweep (a SIGKILL under load) would leave it held and stop every restore for five
            # minutes. A sweep takes milliseconds, so a short expiry costs nothing.
            "unacked_mutex_expire": defaults.UNACKED_MUTEX_EXPIRE_S,
            # Socket and connect timeouts, TCP keepalive and health checks (embedserve/redis_client.py):
            # a half-open broker connection must not hang the consumer; kombu then reconnects it.
            # No retry_on_timeout: kombu's own reconnection handles it.
            **broker_socket_options(),
            **broker_sentinel_options(settings),
        },
        # kombu's transport for the URL's scheme, less a shutdown on losing Redis (see _RestoreSafeChannel).
        broker_transport=SentinelTransport if settings.redis_url.startswith("sentinel://") else RedisTransport,
        broker_connection_retry_on_startup=True,
        broker_pool_limit=settings.api_threads + 4,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    return app
