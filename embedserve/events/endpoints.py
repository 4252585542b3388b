"""Where a key's events go: its endpoint URL and signing secret.

A managed key's endpoint is kept in its Redis record (`embedserve keys create --webhook-url`,
`embedserve keys webhook`); the static keys of EMBED_API_KEYS share EMBED_WEBHOOK_URL and
EMBED_WEBHOOK_SECRET. Looked up when an event is sent, not when it is recorded, so a changed URL
or secret applies to events still waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from embedserve import redis_keys
from embedserve.apikeys import digest_hex
from embedserve.settings import Settings


@dataclass(frozen=True)
class Endpoint:
    """One key's webhook URL and its `whsec_` secret."""

    url: str
    secret: str

    def __repr__(self) -> str:
        return f"Endpoint(url={self.url!r}, secret=<redacted>)"


class Endpoints:
    """Finds an owner's (a key digest's) endpoint: static keys from settings, managed keys from Redis."""

    def __init__(self, client: redis.Redis, settings: Settings):
        self._redis = client
        self._static = None
        if settings.webhook_url:
            self._static = Endpoint(settings.webhook_url, settings.webhook_secret)
        self._static_owners = frozenset(digest_hex(key) for key in settings.api_keys)

    def of(self, owner: str) -> Endpoint | None:
        """The endpoint of `owner`, or None (no endpoint, or the key was revoked)."""
        if owner in self._static_owners:
            return self._static
        url, secret = self._redis.hmget(redis_keys.api_key(owner), "webhook_url", "webhook_secret")
        if not url or not secret:
            return None
        return Endpoint(url.decode(), secret.decode())
