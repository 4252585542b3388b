"""Managed API keys: created and revoked at run time, kept in Redis only as SHA-256 hashes.

A key is shown once, when created; Redis holds its digest, a short prefix to recognise it by,
its name and per-minute limits. The API looks keys up by digest (api/auth.py caches lookups).
A key may have a webhook endpoint (embedserve/events/): its URL and `whsec_` signing secret are
kept in the key's record as they are, since the server must sign with the secret; the secret is
shown once, when made, like the key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import redis

from embedserve import redis_keys
from embedserve.events import signing, url_safety

KEY_PREFIX = "es-"
# Characters of the key kept (and shown) to tell keys apart; far too few to guess the rest.
SHOWN_PREFIX_CHARS = 10
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

# Look a key up by digest and stamp its last use in one round trip; nil when it does not exist.
_LOOKUP_AND_TOUCH = """
local fields = redis.call('HMGET', KEYS[1], 'name', 'rpm', 'tpm', 'max_queued_inputs', 'webhook_url')
if not fields[1] then return nil end
redis.call('HSET', KEYS[1], 'last_used', ARGV[1])
return fields
"""


class KeyStoreError(ValueError):
    """A key operation that cannot be done (duplicate or unknown name, bad limits)."""


@dataclass(frozen=True)
class KeyRecord:
    """What is stored about a managed key (never the key itself)."""

    name: str
    prefix: str
    rpm: int  # requests per minute, 0 = unlimited
    tpm: int  # tokens per minute, 0 = unlimited
    created: float = 0.0
    last_used: float | None = None
    # Inputs of queued and running jobs at once; None = the API's EMBED_MAX_QUEUED_INPUTS_PER_KEY, 0 = unlimited.
    max_queued_inputs: int | None = None
    webhook_url: str | None = None  # where its jobs' and batches' events go; None = nowhere


def key_digest(key: str) -> bytes:
    """Keys are kept and compared only as SHA-256 digests (static keys and managed ones alike)."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def digest_hex(key: str) -> str:
    """A key's digest as stored in Redis."""
    return key_digest(key).hex()


class KeyStore:
    """Create, list, revoke and look up managed keys in Redis."""

    def __init__(self, client: redis.Redis):
        self._redis = client
        self._lookup = client.register_script(_LOOKUP_AND_TOUCH)

    def create(self, name: str, rpm: int = 0, tpm: int = 0, max_queued_inputs: int | None = None,
               webhook_url: str | None = None, webhook_secret: str | None = None,
               allow_private: bool = False) -> tuple[str, KeyRecord]:
        """A new key and its record; the plaintext key is returned here and never stored. With
        `webhook_url`, the key's events go there, signed with `webhook_secret` (signing.new_secret())."""
        if webhook_url is not None:
            check_webhook(webhook_url, webhook_secret, allow_private)
        if not _NAME_RE.match(name):
            raise KeyStoreError("a key name is 1-64 characters of [A-Za-z0-9._@-], starting with a letter or digit")
        if rpm < 0 or tpm < 0 or (max_queued_inputs is not None and max_queued_inputs < 0):
            raise KeyStoreError("--rpm, --tpm and --max-queued-inputs must be 0 (unlimited) or more")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = digest_hex(key)
        if not self._redis.hsetnx(redis_keys.api_key_names(), name, digest):
            raise KeyStoreError(f"a key named '{name}' already exists; revoke it first or pick another name")
        record = KeyRecord(name=name, prefix=key[:SHOWN_PREFIX_CHARS], rpm=rpm, tpm=tpm, created=time.time(),
                           max_queued_inputs=max_queued_inputs, webhook_url=webhook_url)
        fields = {"name": name, "prefix": record.prefix, "rpm": rpm, "tpm": tpm, "created": record.created}
        if max_queued_inputs is not None:
            fields["max_queued_inputs"] = max_queued_inputs
        if webhook_url is not None:
            fields.update(webhook_url=webhook_url, webhook_secret=webhook_secret)
        self._redis.hset(redis_keys.api_key(digest), mapping=fields)
        return key, record

    def set_webhook(self, name: str, url: str, secret: str, allow_private: bool = False) -> None:
        """Point the key's events at `url`, signed with `secret` from now on (events waiting included)."""
        check_webhook(url, secret, allow_private)
        self._update(name, {"webhook_url": url, "webhook_secret": secret})

    def remove_webhook(self, name: str) -> None:
        """Send the key's events nowhere; events still waiting are dropped when their turn comes."""
        self._update(name, None)

    def _update(self, name: str, webhook: dict | None) -> None:
        digest = self._redis.hget(redis_keys.api_key_names(), name)
        if digest is None:
            raise KeyStoreError(f"no key named '{name}'")
        key = redis_keys.api_key(digest.decode())
        pipe = self._redis.pipeline(transaction=True)
        pipe.exists(key)
        if webhook is None:
            pipe.hdel(key, "webhook_url", "webhook_secret")
        else:
            pipe.hset(key, mapping=webhook)
        exists, *_ = pipe.execute()
        if not exists:  # revoked meanwhile: do not leave a bare record behind
            self._redis.delete(key)
            raise KeyStoreError(f"no key named '{name}'")

    def list(self) -> list[KeyRecord]:
        """Every managed key's record, by name."""
        names = self._redis.hgetall(redis_keys.api_key_names())
        pipe = self._redis.pipeline(transaction=False)
        ordered = sorted(names.items())
        for _, digest in ordered:
            pipe.hgetall(redis_keys.api_key(digest.decode()))
        records = []
        for raw in pipe.execute():
            if raw:
                records.append(_record(raw))
        return records

    def revoke(self, name: str) -> bool:
        """Delete a key by name; False when there is none. The API stops accepting it within seconds."""
        digest = self._redis.hget(redis_keys.api_key_names(), name)
        if digest is None:
            return False
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(redis_keys.api_key(digest.decode()))
        pipe.delete(redis_keys.rate_limit(digest.decode()))
        pipe.hdel(redis_keys.api_key_names(), name)
        pipe.execute()
        return True

    def lookup(self, digest: str) -> KeyRecord | None:
        """The record for a presented key's digest (stamping its last use), or None."""
        fields = self._lookup(keys=[redis_keys.api_key(digest)], args=[f"{time.time():.3f}"])
        if not fields:
            return None
        name, rpm, tpm = (f.decode() for f in fields[:3])
        cap = int(fields[3]) if len(fields) > 3 and fields[3] is not None else None
        url = fields[4].decode() if len(fields) > 4 and fields[4] is not None else None
        return KeyRecord(name=name, prefix="", rpm=int(rpm), tpm=int(tpm), max_queued_inputs=cap, webhook_url=url)


def check_webhook(url: str, secret: str | None, allow_private: bool) -> None:
    """KeyStoreError unless `url` is an endpoint we would send to now (embedserve/events/url_safety.py)
    and `secret` a `whsec_` secret."""
    try:
        url_safety.resolve(url, allow_private)
        signing.secret_bytes(secret or "")
    except (url_safety.UnsafeURL, signing.BadSecret) as exc:
        raise KeyStoreError(str(exc)) from None


def _record(raw: dict) -> KeyRecord:
    text = {k.decode(): v.decode() for k, v in raw.items()}
    last = text.get("last_used")
    cap = text.get("max_queued_inputs")
    return KeyRecord(name=text["name"], prefix=text["prefix"], rpm=int(text["rpm"]), tpm=int(text["tpm"]),
                     created=float(text["created"]), last_used=float(last) if last else None,
                     max_queued_inputs=int(cap) if cap is not None else None, webhook_url=text.get("webhook_url"))
