"""Proof that the API and a worker use the same job store, checked once when each starts.

A worker on another host whose EMBED_JOB_STORE is a local directory (or another bucket) would
read no inputs and write chunk results the API can never read: jobs would fail or hang with no
clue why. So the store carries a random token in its object `_meta/identity`, and Redis (which
every process shares) records the token of the API's store. The API's store is the reference:
the API claims at start; a worker compares at start and refuses to run on a different store.
"""

from __future__ import annotations

import logging
import secrets
import time

import redis

from embedserve import redis_keys
from embedserve.jobs.store.base import Store, StoreError

log = logging.getLogger(__name__)

IDENTITY_KEY = "_meta/identity"
CLAIM_ROUNDS = 5


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def claim_identity(store: Store, client: redis.Redis) -> str:
    """Record this (API) process's store as the deployment's store in Redis; returns its token.

    The token belongs to the store: it is minted once, when the store has none, and kept across
    restarts, so API replicas on one store always agree. After SET we read the store's token again:
    two replicas that both found an empty store may both have minted, and the one that SETs last
    then sees (and publishes) whichever token the store ended up with.
    """
    for _ in range(CLAIM_ROUNDS):
        current = _text(client.get(redis_keys.store_identity()))
        token = _text(store.get(IDENTITY_KEY))
        if token is not None and token == current:
            return token
        if token is None:
            store.put(IDENTITY_KEY, secrets.token_hex(16).encode())
            token = _text(store.get(IDENTITY_KEY))
        client.set(redis_keys.store_identity(), token)
        if _text(store.get(IDENTITY_KEY)) == token:
            if current is not None:
                log.info("job store %s replaces another store as this deployment's (its identity differs)",
                         store.url)
            return token
    raise StoreError(f"could not settle the job store identity of {store.url}: it kept changing")


def check_identity(store: Store, client: redis.Redis, timeout: float = 30.0, interval: float = 0.5) -> None:
    """Raise StoreError unless this (worker) process's store is the one the API claimed.

    With no claim in Redis yet (a worker started before any API), wait up to `timeout` seconds for
    one, then claim the store itself: an API starting later re-claims with its own store.
    """
    deadline = time.monotonic() + timeout
    expected = _text(client.get(redis_keys.store_identity()))
    while expected is None and time.monotonic() < deadline:
        time.sleep(interval)
        expected = _text(client.get(redis_keys.store_identity()))
    if expected is None:
        log.info("no API has claimed a job store within %.0fs; this worker claims %s", timeout, store.url)
        claim_identity(store, client)
        return
    found = _text(store.get(IDENTITY_KEY))
    if found != expected:
        why = "has no identity object" if found is None else "carries another store's identity"
        raise StoreError(
            f"this worker's job store ({store.url}) is not the API's: it {why} ({IDENTITY_KEY}), while Redis "
            f"records the API's store token {expected}. Results written here could never be read. Set "
            "EMBED_JOB_STORE to the same location on every host (a shared directory or s3://bucket/prefix).")
