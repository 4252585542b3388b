"""Checks run before serving: the broker Redis must never evict (it would lose queued tasks), the cache Redis must."""

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


# Policies under which a full cache Redis drops its least used entries instead of refusing writes.
CACHE_EVICTION_POLICIES = ("allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu")


def check_cache_policy(cache: redis.Redis, broker: redis.Redis) -> str | None:
    """Why `cache` cannot be EMBED_CACHE_URL's Redis (it is the broker's, or would not evict), or None."""
    try:
        if cache.info("server").get("run_id") == broker.info("server").get("run_id"):
            return ("EMBED_CACHE_URL names the broker's Redis (EMBED_REDIS_URL, maybe another database of it): "
                    "the broker must keep 'noeviction' and the cache must evict, so the cache needs a Redis of its own")
        reply = cache.config_get("maxmemory-policy")
        limit = cache.config_get("maxmemory")
    except redis.ResponseError as exc:
        log.warning("cannot read the cache Redis's maxmemory-policy (%s); make sure it is one of %s, or the "
                    "cache fills up and stops storing", exc, ", ".join(CACHE_EVICTION_POLICIES))
        return None
    policy = _text(reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy") or "")
    if policy and policy not in CACHE_EVICTION_POLICIES:
        return (f"the cache Redis (EMBED_CACHE_URL) has maxmemory-policy '{policy}': a cache must drop old "
                f"entries when full, or it fills up and every new vector is refused. Set one of "
                f"{', '.join(CACHE_EVICTION_POLICIES)} (redis-server --maxmemory 1gb --maxmemory-policy allkeys-lru)")
    if _text(limit.get("maxmemory") or limit.get(b"maxmemory") or "1") == "0":
        # No limit: the policy never applies, the cache grows until the host's memory runs out (and the
        # kernel may then kill the broker's Redis beside it).
        return ("the cache Redis (EMBED_CACHE_URL) has no maxmemory: it would grow until the machine runs out of "
                "memory, never evicting. Give it a limit (redis-server --maxmemory 1gb --maxmemory-policy allkeys-lru)")
    return None
