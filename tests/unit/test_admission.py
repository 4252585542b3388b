"""`admit()` (api/admission.py) against a real Redis-backed RateLimiter, inside a Flask app context.

The routes' own failures are ServiceErrors and were always refunded; these tests cover what else
can go wrong between admission and settlement (a Redis error while dispatching, a bug), which
must give the key its tokens back too, and must reach the caller unchanged.
"""

from __future__ import annotations

import hashlib

import pytest
import redis
from flask import Flask

from api import admission
from api.admission import admit
from api.auth import Identity
from embedserve import redis_keys
from embedserve.errors import InternalError, Timeout
from tests.stack import RedisServer, free_port

# 1 token per second of refill: a test that runs a few seconds cannot refill its way to a pass.
TPM = 60
ESTIMATE = 50


@pytest.fixture
def app(redis_server):
    app = Flask("admission-test")
    admission.init_app(app, redis_server.client())
    with app.app_context():
        yield app


def identity(name: str) -> Identity:
    return Identity(digest=hashlib.sha256(name.encode()).digest(), name=name, rpm=0, tpm=TPM, managed=True)


def tokens_left(redis_server, ident: Identity) -> float:
    """The token bucket's stored level, straight from Redis."""
    raw = redis_server.client().hget(redis_keys.rate_limit(ident.digest.hex()), "tok")
    assert raw is not None, "admission never touched the bucket"
    return float(raw)


def test_a_redis_error_during_dispatch_refunds_the_estimate(app, redis_server):
    ident = identity("redis-error-during-dispatch")
    # A real Redis failure: a connection to a port nothing listens on, as a dispatch to a lost Redis gets.
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        with admit(ESTIMATE, ident):
            assert tokens_left(redis_server, ident) <= TPM - ESTIMATE + 5  # charged on admission
            unreachable.ping()
    assert tokens_left(redis_server, ident) >= TPM - 1  # refunded (the bucket is full again)


def test_any_other_exception_refunds_and_propagates_unchanged(app, redis_server):
    ident = identity("bug-during-dispatch")

    class Boom(Exception):
        pass

    with pytest.raises(Boom, match="not a ServiceError"):
        with admit(ESTIMATE, ident):
            raise Boom("not a ServiceError")
    assert tokens_left(redis_server, ident) >= TPM - 1


def test_a_service_error_is_still_refunded_and_a_timeout_still_charged(app, redis_server):
    failed, timed_out = identity("service-error"), identity("timeout")
    with pytest.raises(InternalError):
        with admit(ESTIMATE, failed):
            raise InternalError("worker failed")
    with pytest.raises(Timeout):
        with admit(ESTIMATE, timed_out):
            raise Timeout("too slow")
    assert tokens_left(redis_server, failed) >= TPM - 1
    assert tokens_left(redis_server, timed_out) <= TPM - ESTIMATE + 5  # its work may have run: kept


def test_success_settles_to_the_real_usage(app, redis_server):
    ident = identity("success")
    with admit(ESTIMATE, ident) as ticket:
        ticket.record_usage(10)
    assert TPM - 10 - 1 <= tokens_left(redis_server, ident) <= TPM - 10 + 5


def test_the_original_error_wins_when_the_refund_cannot_reach_redis():
    """Redis gone between admission and the refund: the caller sees what failed, not the refund's error."""
    server = RedisServer.start()
    try:
        app = Flask("admission-redis-gone")
        admission.init_app(app, server.client())
        ident = identity("redis-gone")
        with app.app_context():
            with pytest.raises(RuntimeError, match="dispatch broke"):
                with admit(ESTIMATE, ident):
                    server.stop()
                    raise RuntimeError("dispatch broke")
    finally:
        server.stop()
