"""Checks both processes run before serving: a Redis that may evict keys would lose queued tasks."""

from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)

# The only policy under which Redis never drops a queue, reply list, key record or job to make room.
SAFE_EVICTION_POLICY = "noeviction"


def check_eviction_policy(client: redis.Redis) -> str | None:
    """Why this Redis is unsafe (it may evict keys), or None; warns when CONFIG GET is disabled."""
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.ResponseError as exc:
        # Managed Redis services often disable or rename CONFIG; we cannot tell, so we trust it.
        log.warning("cannot read Redis maxmemory-policy (%s); make sure it is 'noeviction', or queued "
                    "tasks may be evicted under memory pressure", exc)
        return None
    policy = _text(reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy") or "")
    if policy and policy != SAFE_EVICTION_POLICY:
        return (f"Redis maxmemory-policy is '{policy}': under memory pressure it would evict queued "
                f"tasks, replies and API keys. Set 'maxmemory-policy noeviction' "
                f"(redis-server --maxmemory-policy noeviction, or CONFIG SET maxmemory-policy noeviction)")
    return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
