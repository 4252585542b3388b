"""Reading and writing cache entries, and a cache that fails meaning "compute".

An entry is one input's full-width float vector and its token count: 4 bytes of little-endian
uint32 tokens, then the float32 row. Reads are one MGET per call, writes one pipeline of SETs
with a TTL (defaults.CACHE_TTL_S: under volatile-lru/lfu only keys with a TTL can be evicted).

The cache is an optimization, never a dependency: a call that fails (the Redis is down, slower than
defaults.CACHE_SOCKET_TIMEOUT_S, out of memory under a policy that does not evict) is counted and
logged once, and reads or writes (each on its own) are skipped for defaults.CACHE_RETRY_AFTER_S,
so a dead cache costs one short timeout now and then, not one per request. Its inputs are computed.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from embedserve import defaults, redis_keys

log = logging.getLogger(__name__)

HITS, MISSES, ERRORS = "hits", "misses", "errors"
_TOKENS = struct.Struct("<I")


def cache_client(url: str, timeout: float = defaults.CACHE_SOCKET_TIMEOUT_S) -> redis.Redis:
    """A client for EMBED_CACHE_URL: short timeouts and no retries (a failed call is simply a miss)."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0)


class VectorCache:
    """Entries of one model identity (`fingerprint`) of width `dim` in one cache Redis."""

    def __init__(self, client: redis.Redis, fingerprint: str, dim: int, *,
                 count: Callable[[str, int], None] | None = None, ttl: int = defaults.CACHE_TTL_S,
                 retry_after: float = defaults.CACHE_RETRY_AFTER_S):
        self.redis = client
        self.fingerprint = fingerprint
        self.dim = dim
        self._count = count or (lambda outcome, n: None)
        self._ttl = ttl
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._paused_until = {"read": 0.0, "write": 0.0}
        # Whether reads or writes are failing: logged once per outage, cleared (and logged) by the next that works.
        self._failing = {"read": False, "write": False}

    def get(self, scope: str, digests: list[str]) -> list[tuple[int, np.ndarray] | None]:
        """(tokens, float32 vector) per digest found, None per one not found (or not looked up: cache failing)."""
        if not digests or not self._usable("read"):
            self._count(MISSES, len(digests))
            return [None] * len(digests)
        try:
            values = self.redis.mget([redis_keys.cache_entry(self.fingerprint, scope, d) for d in digests])
        except redis.RedisError as exc:
            self._failed("read", exc)
            self._count(MISSES, len(digests))
            return [None] * len(digests)
        self._worked("read")
        found = [self._parse(value) for value in values]
        hits = sum(1 for entry in found if entry is not None)
        self._count(HITS, hits)
        self._count(MISSES, len(found) - hits)
        return found

    def put(self, scope: str, entries: list[tuple[str, int, np.ndarray]]) -> None:
        """Store (digest, tokens, full-width float32 vector) entries; a failure is counted, never raised."""
        if not entries or not self._usable("write"):
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for digest, tokens, vector in entries:
                value = _TOKENS.pack(tokens) + np.ascontiguousarray(vector, dtype="<f4").tobytes()
                pipe.set(redis_keys.cache_entry(self.fingerprint, scope, digest), value, ex=self._ttl)
            pipe.execute()  # raises the first error (an OOM reply included) after reading every reply
        except redis.RedisError as exc:
            self._failed("write", exc)
            return
        self._worked("write")

    def _parse(self, value: bytes | None) -> tuple[int, np.ndarray] | None:
        if value is None or len(value) != _TOKENS.size + 4 * self.dim:
            return None  # absent, or not this width (nothing of ours): computed again
        (tokens,) = _TOKENS.unpack_from(value)
        return tokens, np.frombuffer(value, dtype="<f4", offset=_TOKENS.size)

    def _usable(self, direction: str) -> bool:
        return time.monotonic() >= self._paused_until[direction]

    def _failed(self, direction: str, exc: Exception) -> None:
        self._count(ERRORS, 1)
        with self._lock:
            self._paused_until[direction] = time.monotonic() + self._retry_after
            first, self._failing[direction] = not self._failing[direction], True
        if first:
            log.warning("embedding cache (EMBED_CACHE_URL) %s failed: %s; computing instead, and leaving the cache's "
                        "%ss alone for %.0f s at a time until it works again", direction, exc, direction,
                        self._retry_after)

    def _worked(self, direction: str) -> None:
        if self._failing[direction]:
            with self._lock:
                was, self._failing[direction] = self._failing[direction], False
            if was:
                log.info("embedding cache (EMBED_CACHE_URL) %ss work again", direction)
