"""Fixtures the unit tests share."""

from __future__ import annotations

import pytest

from tests.stack import RedisServer


@pytest.fixture(scope="module")
def redis_server():
    """A private redis-server for one test module (the few unit tests that need a real Redis)."""
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture
def client(redis_server):
    """A client of that Redis, emptied first: each test starts from no keys."""
    client = redis_server.client()
    client.flushdb()
    return client
