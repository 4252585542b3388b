"""Events waiting in Redis for delivery, each leased to one sender at a time.

An event is recorded by the same Lua step that gives its job the final status (RECORD_EVENT, run
inside embedserve/jobs/scripts.py's set_status), so no process can die between the two: a job that
ended has its event. Senders take the earliest due event with a lease (its due time moves to the
lease's end); a sender that dies mid-attempt leaves the event due again when the lease runs out,
and any other process takes it. Only the holder of the current lease (a counter in the event,
bumped on every take) may record the attempt's outcome: a sender that outlived its lease and
finishes late changes nothing (its receiver may see the event twice, which `webhook-id` allows).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from embedserve import defaults, redis_keys

# The Lua that records a job's event when it first reaches a final status: only for a job submitted
# by a key with an endpoint (the `webhook` field, set at submission). The event types mirror
# embedserve/events/event.py. Run twice (a retried script), HSETNX makes the second a no-op.
RECORD_EVENT = f"local WEBHOOK_EVENT_TTL = {defaults.WEBHOOK_EVENT_TTL_S}\n" + """
local FINAL = {completed = true, failed = true, cancelled = true, expired = true}
local function record_event(p, id, old, new, now)
  if FINAL[old] or not FINAL[new] then return end
  local job = p .. 'job:' .. id
  local f = redis.call('HMGET', job, 'webhook', 'kind', 'batch_id', 'owner')
  if f[1] ~= '1' then return end
  local object_id, event_type = id, 'embedding.job.' .. new
  if f[2] == 'batch' then
    if not f[3] then return end
    object_id = f[3]
    event_type = 'batch.' .. (new == 'failed' and 'completed' or new)
  end
  local eid = 'evt_' .. string.match(object_id, '([^_]+)$')
  local ev = p .. 'webhook:' .. eid
  if redis.call('HSETNX', ev, 'id', eid) == 0 then return end
  redis.call('HSET', ev, 'type', event_type, 'object_id', object_id, 'owner', f[4], 'created_at', now,
             'record', job, 'attempts', 0, 'lease', 0)
  redis.call('EXPIRE', ev, WEBHOOK_EVENT_TTL)
  redis.call('ZADD', p .. 'webhooks:due', now * 1000, eid)
end
"""

_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# Take the earliest due event for `lease_ms`. ARGV: prefix, lease_ms. Returns {id, lease, fields...} or nil.
_TAKE = _LIB + """
local p = ARGV[1]
local due = p .. 'webhooks:due'
local now = now_ms()
for _ = 1, 16 do
  local eid = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, 1)[1]
  if not eid then return nil end
  local ev = p .. 'webhook:' .. eid
  if redis.call('EXISTS', ev) == 1 then
    local lease = redis.call('HINCRBY', ev, 'lease', 1)
    redis.call('ZADD', due, now + tonumber(ARGV[2]), eid)
    local out = {eid, tostring(lease)}
    for _, v in ipairs(redis.call('HGETALL', ev)) do out[#out + 1] = v end
    return out
  end
  redis.call('ZREM', due, eid)  -- its record is gone (past its TTL): nothing to send
end
return nil
"""

# The attempt succeeded. ARGV: prefix, id, lease. 1, or 0 when the lease was no longer ours.
_DELIVERED = _LIB + """
local p, eid = ARGV[1], ARGV[2]
local ev = p .. 'webhook:' .. eid
if redis.call('HGET', ev, 'lease') ~= ARGV[3] then return 0 end
local record = redis.call('HGET', ev, 'record')
if record and redis.call('EXISTS', record) == 1 then
  redis.call('HSET', record, 'webhook_delivered_at', math.floor(now_ms() / 1000))
end
redis.call('DEL', ev)
redis.call('ZREM', p .. 'webhooks:due', eid)
redis.call('HINCRBY', p .. 'metrics:webhooks', 'delivered', 1)
return 1
"""

# The attempt failed. ARGV: prefix, id, lease, delay_ms, window_s (retries stop that long after the
# event). 1 = due again after the delay, 2 = given up (the delay would pass the window), 0 = lease lost.
_FAILED = _LIB + """
local p, eid = ARGV[1], ARGV[2]
local ev = p .. 'webhook:' .. eid
if redis.call('HGET', ev, 'lease') ~= ARGV[3] then return 0 end
redis.call('HINCRBY', p .. 'metrics:webhooks', 'failed', 1)
redis.call('HINCRBY', ev, 'attempts', 1)
local now = now_ms()
local next_at = now + tonumber(ARGV[4])
local deadline = (tonumber(redis.call('HGET', ev, 'created_at')) + tonumber(ARGV[5])) * 1000
if next_at > deadline then
  redis.call('DEL', ev)
  redis.call('ZREM', p .. 'webhooks:due', eid)
  redis.call('HINCRBY', p .. 'metrics:webhooks', 'given_up', 1)
  return 2
end
redis.call('ZADD', p .. 'webhooks:due', next_at, eid)
return 1
"""

# Nothing to send it to (the key was revoked or its endpoint removed). ARGV: prefix, id, lease.
_DROP = """
local p, eid = ARGV[1], ARGV[2]
local ev = p .. 'webhook:' .. eid
if redis.call('HGET', ev, 'lease') ~= ARGV[3] then return 0 end
redis.call('DEL', ev)
redis.call('ZREM', p .. 'webhooks:due', eid)
return 1
"""


@dataclass(frozen=True)
class Taken:
    """An event this process holds the lease of: its record's fields and the lease number."""

    id: str
    lease: str
    fields: dict[str, str]

    @property
    def attempts(self) -> int:
        """Attempts that failed before this one."""
        return int(self.fields.get("attempts", 0))


def record_steps(pipe: redis.client.Pipeline, event: dict, record_key: str) -> None:
    """Queue on `pipe` (a MULTI) the recording of an event that no job script makes: a batch that
    fails validation ends in the same transaction that records it. `event`: id, type, object_id,
    owner, created_at."""
    key = redis_keys.webhook_event(event["id"])
    pipe.hset(key, mapping={**event, "record": record_key, "attempts": 0, "lease": 0})
    pipe.expire(key, defaults.WEBHOOK_EVENT_TTL_S)
    pipe.zadd(redis_keys.webhooks_due(), {event["id"]: int(event["created_at"]) * 1000})


class Outbox:
    """The events waiting in one Redis; the connection is passed in."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._take = client.register_script(_TAKE)
        self._delivered = client.register_script(_DELIVERED)
        self._failed = client.register_script(_FAILED)
        self._drop = client.register_script(_DROP)

    def take(self, lease_s: float) -> Taken | None:
        """The earliest due event, leased to this caller for `lease_s`; None when none is due."""
        out = self._take(keys=[], args=[redis_keys.PREFIX, int(lease_s * 1000)])
        if not out:
            return None
        text = [v.decode() for v in out]
        return Taken(id=text[0], lease=text[1], fields=dict(zip(text[2::2], text[3::2])))

    def delivered(self, taken: Taken) -> bool:
        """Record a 2xx: the event is done and its job says when. False when the lease was lost."""
        return self._delivered(keys=[], args=[redis_keys.PREFIX, taken.id, taken.lease]) == 1

    def failed(self, taken: Taken, delay_s: float, window_s: float) -> str:
        """Record a failed attempt: 'retry' (due after `delay_s`), 'given_up' (past `window_s` after the
        event), or 'lost' (the lease was no longer ours)."""
        result = self._failed(keys=[], args=[redis_keys.PREFIX, taken.id, taken.lease, int(delay_s * 1000),
                                             int(window_s)])
        return {0: "lost", 1: "retry", 2: "given_up"}[int(result)]

    def drop(self, taken: Taken) -> bool:
        """Forget an event that has nowhere to go."""
        return self._drop(keys=[], args=[redis_keys.PREFIX, taken.id, taken.lease]) == 1

    def counts(self) -> dict[str, int]:
        """Delivered, failed attempts and given up, fleet-wide since Redis started keeping them."""
        raw = self.redis.hgetall(redis_keys.webhook_counts())
        counts = {k.decode(): int(v) for k, v in raw.items()}
        return {name: counts.get(name, 0) for name in ("delivered", "failed", "given_up")}

    def pending(self) -> int:
        """Events not yet delivered nor given up."""
        return int(self.redis.zcard(redis_keys.webhooks_due()))
