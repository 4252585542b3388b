"""API-key authentication: `Authorization: Bearer KEY`, or a bare `Authorization: KEY`.

Two kinds of keys: static ones from EMBED_API_KEYS (compared in constant time against their
digests, no Redis) and managed ones (`embedserve keys create`), looked up in Redis by digest.
Managed lookups are cached for MANAGED_KEY_CACHE_S, so a busy key costs one Redis round trip
per second per server process, and a revoked key stops working within that time.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from embedserve import defaults
from embedserve.apikeys import KeyStore, key_digest
from embedserve.errors import AuthenticationFailed


@dataclass(frozen=True)
class Identity:
    """Who is calling: the key's digest (its identity everywhere), name and per-minute limits."""

    digest: bytes
    name: str
    rpm: int  # 0 = unlimited
    tpm: int  # 0 = unlimited
    managed: bool
    max_queued_inputs: int | None = None  # a managed key's own bulk cap; None = EMBED_MAX_QUEUED_INPUTS_PER_KEY
    webhook: bool = False  # whether the key has a webhook endpoint: its jobs' ends are then recorded as events


class KeyChecker:
    """Checks a request's Authorization header against static keys, then managed ones."""

    def __init__(self, keys: Iterable[str], store: KeyStore | None = None, *, static_rpm: int = 0,
                 static_tpm: int = 0, static_webhook: bool = False, cache_s: float = defaults.MANAGED_KEY_CACHE_S):
        self._digests = tuple(key_digest(k) for k in keys)
        self._store = store
        self._static_limits = (static_rpm, static_tpm)
        self._static_webhook = static_webhook
        self._cache_s = cache_s
        self._cache: dict[bytes, tuple[float, Identity | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, header: str | None) -> bytes:
        """Return the matching key's digest (the caller's identity) or raise AuthenticationFailed."""
        return self.identify(header).digest

    def identify(self, header: str | None) -> Identity:
        """The caller's Identity, or AuthenticationFailed."""
        if not header or not header.strip():
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.", code="missing_api_key")
        scheme, _, rest = header.strip().partition(" ")
        presented = rest.strip() if scheme.lower() == "bearer" else header.strip()
        digest = key_digest(presented)
        match = None
        for candidate in self._digests:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(candidate, digest):
                match = candidate
        if match is not None:
            return Identity(match, "static", *self._static_limits, managed=False, webhook=self._static_webhook)
        identity = self._managed(digest) if self._store is not None else None
        if identity is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return identity

    def _managed(self, digest: bytes) -> Identity | None:
        # A dict lookup by digest reveals nothing useful by its timing: the digest is not the key.
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = self._store.lookup(digest.hex())
        identity = None if record is None else Identity(
            digest, record.name, record.rpm, record.tpm, managed=True, max_queued_inputs=record.max_queued_inputs,
            webhook=record.webhook_url is not None)
        with self._lock:
            if len(self._cache) >= defaults.MANAGED_KEY_CACHE_ENTRIES:
                self._cache.clear()  # bounded: a flood of wrong keys cannot grow it without limit
            self._cache[digest] = (now + self._cache_s, identity)
        return identity
