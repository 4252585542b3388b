"""API-key authentication: `Authorization: Bearer KEY`, or a bare `Authorization: KEY`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from embedserve.errors import AuthenticationFailed


def hash_key(key: str) -> bytes:
    """Keys are kept and compared only as SHA-256 digests."""
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyChecker:
    """Checks a request's Authorization header against the configured keys, in constant time."""

    def __init__(self, keys: Iterable[str]):
        self._digests = tuple(hash_key(k) for k in keys)

    def authenticate(self, header: str | None) -> bytes:
        """Return the matching key's digest (the caller's identity) or raise AuthenticationFailed."""
        if not header or not header.strip():
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.", code="missing_api_key")
        scheme, _, rest = header.strip().partition(" ")
        presented = rest.strip() if scheme.lower() == "bearer" else header.strip()
        digest = hash_key(presented)
        match = None
        for candidate in self._digests:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(candidate, digest):
                match = candidate
        if match is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return match
