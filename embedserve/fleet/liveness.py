"""Which workers are alive, judged on Redis's clock, and what happens to the work of one that is not.

Every worker heartbeats every HEARTBEAT_INTERVAL_S: one script stamps it, with Redis's own `TIME`,
in the fleet (`redis_keys.fleet`, every worker) and in its model's set (`redis_keys.worker_heartbeats`, what
routing counts). A worker whose stamp is older than EMBED_WORKER_DEAD_AFTER is dead, for routing
and for reaping alike: one meaning of "alive", and no comparison between two hosts' clocks.

Whoever notices a dead worker (every worker and API process runs a `Reaper`) hands its bulk
chunks back to their jobs in one atomic script (`hand_back` in embedserve/jobs/scripts.py), then
drops it from the fleet; two reapers racing hand each chunk back once. The attempt its death cost
was counted when the chunk was claimed, so a chunk that kills every worker that takes it runs out
of attempts and fails instead of looping. Sync chunks need no hand-back here:
the API that waits for them sees their worker die and sends them again (api/inflight.py).

A worker that was only paused (SIGSTOP, a frozen VM) and wakes after being reaped is harmless: its
late results are counted once (the job scripts count a chunk on its first finish only), and its
next heartbeat puts it back in the fleet.
"""

from __future__ import annotations

import json
import logging

import redis

from embedserve import defaults, redis_keys
from embedserve.jobs.scripts import HAND_BACK_ALL
from embedserve.periodic import Periodic

log = logging.getLogger(__name__)

# KEYS: fleet, model's set, worker info. ARGV: worker id, info JSON, info TTL (ms), routed (1/0).
# Returns Redis's time, seconds (float as string), so callers can say when they were seen.
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZADD', KEYS[1], now, ARGV[1])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], now, ARGV[1]) end
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return tostring(now)
"""

# KEYS: per-model sets. ARGV: dead-after seconds. Returns one live count per key.
_LIVE_COUNTS = """
local t = redis.call('TIME')
local since = tonumber(t[1]) + tonumber(t[2]) / 1e6 - tonumber(ARGV[1])
local counts = {}
for i, key in ipairs(KEYS) do counts[i] = redis.call('ZCOUNT', key, since, '+inf') end
return counts
"""

# KEYS: fleet. ARGV: dead-after seconds, worker ids. Returns 1/0 per id.
_ALIVE = """
local t = redis.call('TIME')
local since = tonumber(t[1]) + tonumber(t[2]) / 1e6 - tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  out[i - 1] = (score and tonumber(score) >= since) and 1 or 0
end
return out
"""

# Reap every worker of the fleet whose stamp is older than ARGV[1] seconds: hand back what it
# held, forget it. KEYS: fleet. ARGV: dead-after seconds, key prefix. Returns the reaped ids.
_REAP = HAND_BACK_ALL + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
for _, id in ipairs(dead) do
  hand_back_all(ARGV[2], id, 0, t[1])
  redis.call('ZREM', KEYS[1], id)
  local info = redis.call('GET', ARGV[2] .. 'worker:' .. id)
  if info then
    local model = cjson.decode(info)['model']
    if model then redis.call('ZREM', ARGV[2] .. 'workers:' .. model, id) end
  end
  redis.call('DEL', ARGV[2] .. 'worker:' .. id)
end
return dead
"""

# A worker leaving on purpose (drain, watchdog): hand back what it holds, leave fleet and routing.
# KEYS: fleet, model's set, info. ARGV: worker id, key prefix, refund (1: the attempt is not counted).
_LEAVE = HAND_BACK_ALL + """
local t = redis.call('TIME')
local n = hand_back_all(ARGV[2], ARGV[1], tonumber(ARGV[3]), t[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return n
"""


class Liveness:
    """Heartbeats, live counts and the reaper's one step, on one Redis connection."""

    def __init__(self, client: redis.Redis, dead_after: float = defaults.WORKER_DEAD_AFTER_S):
        self.redis = client
        self.dead_after = dead_after
        self._beat = client.register_script(_BEAT)
        self._live = client.register_script(_LIVE_COUNTS)
        self._alive = client.register_script(_ALIVE)
        self._reap = client.register_script(_REAP)
        self._leave = client.register_script(_LEAVE)

    def beat(self, worker_id: str, model: str, info: dict | None = None, *, routed: bool = True) -> float:
        """Stamp `worker_id` (serving `model`) alive now; returns Redis's time.

        `routed` False (a draining worker): alive, so what it holds is not reaped, but given no new work.
        """
        body = json.dumps({**(info or {}), "model": model})
        ttl_ms = int(max(self.dead_after * 4, 60) * 1000)  # outlives the stamp: the reaper reads the model here
        return float(self._beat(keys=[redis_keys.fleet(), redis_keys.worker_heartbeats(model), redis_keys.worker_info(worker_id)],
                                args=[worker_id, body, ttl_ms, 1 if routed else 0]))

    def withdraw(self, worker_id: str, model: str) -> None:
        """Stop routing to a worker that drains; it stays in the fleet, so what it holds is not reaped."""
        self.redis.zrem(redis_keys.worker_heartbeats(model), worker_id)

    def leave(self, worker_id: str, model: str, *, refund: bool) -> int:
        """Hand back every chunk the worker holds and forget it; returns how many went back.

        `refund`: the chunks' attempts are given back (a drain); a watchdog exit keeps them counted.
        """
        return int(self._leave(keys=[redis_keys.fleet(), redis_keys.worker_heartbeats(model), redis_keys.worker_info(worker_id)],
                               args=[worker_id, redis_keys.PREFIX, 1 if refund else 0]))

    def live_counts(self, models: list[str]) -> dict[str, int]:
        """Live workers of each model, by Redis's clock."""
        if not models:
            return {}
        counts = self._live(keys=[redis_keys.worker_heartbeats(m) for m in models], args=[self.dead_after])
        return {m: int(n) for m, n in zip(models, counts)}

    def alive(self, worker_ids: list[str]) -> dict[str, bool]:
        """Whether each worker's last heartbeat is within the dead-after time."""
        if not worker_ids:
            return {}
        flags = self._alive(keys=[redis_keys.fleet()], args=[self.dead_after, *worker_ids])
        return {w: bool(f) for w, f in zip(worker_ids, flags)}

    def reap(self) -> list[str]:
        """Hand back the work of every dead worker and forget them; returns their ids."""
        dead = [d.decode() for d in self._reap(keys=[redis_keys.fleet()], args=[self.dead_after, redis_keys.PREFIX])]
        for worker_id in dead:
            log.warning("worker %s missed its heartbeats for %gs: its chunks went back to their jobs",
                        worker_id, self.dead_after)
        return dead


class Reaper(Periodic):
    """`Liveness.reap` every few seconds (in every worker and API process)."""

    def __init__(self, liveness: Liveness, interval: float | None = None):
        super().__init__("reaper", interval or max(1.0, liveness.dead_after / 5), liveness.reap)
