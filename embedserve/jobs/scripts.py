"""Lua scripts of job records and the bulk scheduler: each state change is one atomic step in Redis.

Atomic matters for exactly-once counting: a chunk finished by two workers (a hand-back racing
the original, a paused worker waking up) must move the counters once, and the job must end
exactly when its last chunk is counted, whoever counts it.

The scripts build key names from the prefix they get as ARGV[1] (the layout of
embedserve/redis_keys.py, mirrored here), because which keys a step touches (the job's owner, its
model's rotation) is only known inside the step. That is fine on one Redis, which is what the
service uses (Redis Cluster would need hash tags).

A worker's Redis client retries a command whose reply was lost (a timeout, a dropped connection),
so a script may run twice for one call. Each step is safe to run twice: CLAIM, FINISH and FINALIZE
take a request token and answer a repeated token with the first run's reply (kept for ONCE_TTL_S);
a hand-back acts only if the chunk was still held; SUBMIT does nothing for an id that exists.
Only the holder of the compaction step may end a job: a compactor that was reaped (paused past
dead-after) and wakes up gets 'lost' and must leave the parts alone.

A job's chunks are counted in two ways: `done` (a set of chunk numbers that finished or will
never run again) and `settled` (how many chunks were never handed out when the job stopped:
cancel or expiry set `next` to `chunks`, so those can never be claimed). The job ends when
SCARD(done) + settled reaches `chunks`. A native job that ends with results is compacted first
(a worker turns its per-chunk parts into Parquet files, embedserve/jobs/results.py): the
pseudo-chunk 'c' stands for that step, held and handed back like any chunk.
"""

from __future__ import annotations

from embedserve.events.outbox import RECORD_EVENT

# The order of the per-status index keys (JobStatus values), for /metrics.
STATUS_ORDER = ("queued", "in_progress", "completed", "failed", "cancelling", "cancelled", "expired")

# The pseudo-chunk that stands for compacting a finished job's results.
COMPACT_CHUNK = "c"

# Seconds a script's reply is kept under its request token, so a client's retry of a call whose
# reply was lost gets the same answer. Well above the worker client's longest retry sequence
# (embedserve/redis_client.py: about 45 s), and short enough that the replies of a busy fleet
# stay a few thousand small keys.
ONCE_TTL_S = 120

# Functions shared by every script. `p` is the key prefix, `id` a job id, `now` unix seconds.
LIB = f"local ONCE_TTL = {ONCE_TTL_S}\n" + RECORD_EVENT + """
local function now_s()
  return tonumber(redis.call('TIME')[1])
end

-- The reply an earlier run of this request token gave, wrapped in a table ({} for nil), or nil.
local function replayed(p, token)
  local prev = redis.call('GET', p .. 'once:' .. token)
  if prev then return cjson.decode(prev) end
  return nil
end

-- Keep `reply` under the request token, and return it.
local function remember(p, token, reply, ttl)
  redis.call('SET', p .. 'once:' .. token, cjson.encode({r = reply}), 'EX', ttl)
  return reply
end

local function set_status(p, id, new, now)
  local job = p .. 'job:' .. id
  local old = redis.call('HGET', job, 'status')
  if not old or old == new then return end
  redis.call('HSET', job, 'status', new)
  redis.call('HSETNX', job, new .. '_at', now)
  -- the per-status sets are scored by when the record expires, so expired ids can be pruned
  local ttl = redis.call('PTTL', job)
  local expires = now + (ttl > 0 and math.ceil(ttl / 1000) or 0)
  redis.call('ZREM', p .. 'jobs:status:' .. old, id)
  redis.call('ZADD', p .. 'jobs:status:' .. new, expires, id)
  -- in the same step as the status, so a job that ended always has its event (embedserve/events/outbox.py)
  record_event(p, id, old, new, now)
end

-- Inputs the owner's live jobs hold against its cap. An entry whose job record is gone (a submission
-- cleaned up after its SUBMIT, a record past its life) holds nothing and is pruned here, so a leaked
-- entry can never block a key.
local function quota_used(p, owner)
  local quota = p .. 'quota:' .. owner
  local used = 0
  local all = redis.call('HGETALL', quota)
  for i = 1, #all, 2 do
    if redis.call('EXISTS', p .. 'job:' .. all[i]) == 1 then used = used + tonumber(all[i + 1])
    else redis.call('HDEL', quota, all[i]) end
  end
  return used
end

local function release_quota(p, id)
  local owner = redis.call('HGET', p .. 'job:' .. id, 'owner')
  if owner then redis.call('HDEL', p .. 'quota:' .. owner, id) end
end

-- Put a job (back) in its model's rotation and wake an idle bulk slot.
local function activate(p, id)
  local f = redis.call('HMGET', p .. 'job:' .. id, 'model', 'owner', 'created_ms')
  if not f[1] then return end
  local base = p .. 'sched:' .. f[1]
  redis.call('ZADD', base .. ':owner:' .. f[2], f[3], id)
  if not redis.call('LPOS', base .. ':ring', f[2]) then redis.call('RPUSH', base .. ':ring', f[2]) end
  redis.call('LPUSH', base .. ':wake', '1')
  redis.call('LTRIM', base .. ':wake', 0, 63)
end

-- End the job when every chunk is done or settled. Returns the final status, 'compact' when
-- the caller must compact it first (a native job with results), or nil.
local function settle_check(p, id, now)
  local job = p .. 'job:' .. id
  local f = redis.call('HMGET', job, 'status', 'chunks', 'settled', 'stop_as', 'kind', 'completed', 'failed')
  if not f[1] then return nil end
  if f[1] ~= 'queued' and f[1] ~= 'in_progress' and f[1] ~= 'cancelling' then return nil end
  if redis.call('SCARD', job .. ':done') + tonumber(f[3] or '0') < tonumber(f[2]) then return nil end
  local final = f[4]
  if not final then
    if f[5] == 'job' then
      if redis.call('HSETNX', job, 'compacting', now) == 1 then return 'compact' end
      return nil
    end
    final = (tonumber(f[6]) == 0 and tonumber(f[7]) > 0) and 'failed' or 'completed'
  end
  set_status(p, id, final, now)
  release_quota(p, id)
  return final
end

-- Stop handing out a job's chunks (cancel, expiry): what was never handed out is settled, what
-- waits to run again is marked done (a late finish of it is then not counted).
local function stop_job(p, id, stop_as, now)
  local job = p .. 'job:' .. id
  local f = redis.call('HMGET', job, 'next', 'chunks', 'stop_as')
  if not f[2] or f[3] then return nil end
  redis.call('HSET', job, 'next', f[2], 'stop_as', stop_as)
  redis.call('HINCRBY', job, 'settled', tonumber(f[2]) - tonumber(f[1]))
  for _, c in ipairs(redis.call('LRANGE', job .. ':retry', 0, -1)) do
    if c ~= 'c' then redis.call('SADD', job .. ':done', c) end
  end
  redis.call('DEL', job .. ':retry')
  local ttl = redis.call('PTTL', job)
  if ttl > 0 then redis.call('PEXPIRE', job .. ':done', ttl) end
  return settle_check(p, id, now)
end

-- Give one held chunk back to its job. `refund` 1: the attempt it cost is given back (a drain).
local function hand_back(p, id, chunk, refund, now)
  local job = p .. 'job:' .. id
  if redis.call('EXISTS', job) == 0 then return 0 end
  if refund == 1 then redis.call('HINCRBY', job .. ':attempts', chunk, -1) end
  if chunk == 'c' then
    if redis.call('HGET', job, 'compacted') == '1' then return 0 end  -- "0" is true in Lua
    redis.call('LPUSH', job .. ':retry', 'c')
    activate(p, id)
    return 1
  end
  if redis.call('SISMEMBER', job .. ':done', chunk) == 1 then return 0 end
  local f = redis.call('HMGET', job, 'status', 'stop_as')
  if f[2] or (f[1] ~= 'queued' and f[1] ~= 'in_progress') then
    redis.call('SADD', job .. ':done', chunk)  -- it will never run: settled
    settle_check(p, id, now)
    return 1
  end
  redis.call('LPUSH', job .. ':retry', chunk)  -- first in line when its job comes round
  activate(p, id)
  return 1
end

-- The next handed-back chunk of a running job that still needs running, or nil. A copy whose
-- chunk was finished meanwhile (its reaped worker woke up and finished it) is dropped, and so is a
-- compaction step that is done or was never due: running either again would redo finished work.
local function next_retry(p, id)
  local job = p .. 'job:' .. id
  while true do
    local chunk = redis.call('LPOP', job .. ':retry')
    if not chunk then return nil end
    if chunk == 'c' then
      if redis.call('HGET', job, 'compacting') and redis.call('HGET', job, 'compacted') ~= '1' then return chunk end
    elseif redis.call('SISMEMBER', job .. ':done', chunk) == 0 then
      return chunk
    end
  end
end
"""

# Hand back every chunk a worker holds (its death, its drain, its watchdog), then forget them.
HAND_BACK_ALL = LIB + """
local function hand_back_all(p, worker, refund, now)
  local held = p .. 'held:' .. worker
  local entries = redis.call('HKEYS', held)
  local n = 0
  for _, e in ipairs(entries) do
    local sep = string.find(e, '|', 1, true)
    n = n + hand_back(p, string.sub(e, 1, sep - 1), string.sub(e, sep + 1), refund, tonumber(now))
  end
  redis.call('DEL', held)
  return n
end
"""

# Create a job whole: quota check, record, indexes, rotation; or nothing. ARGV: prefix, id,
# owner, cap (0 = none), total, record TTL (s), listed (1/0), then record field/value pairs.
# Returns -1 when created, -2 when the id exists already (nothing done), else the inputs the owner
# already has queued (over the cap).
SUBMIT = LIB + """
local p, id, owner = ARGV[1], ARGV[2], ARGV[3]
local cap, total, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
-- A second run for one id (a retried call) must not reset the record it made, nor count it twice
-- against the quota: the id is new per submission (122 random bits), so it exists only if we made it.
if redis.call('EXISTS', p .. 'job:' .. id) == 1 then return -2 end
local quota = p .. 'quota:' .. owner
if cap > 0 then
  local used = quota_used(p, owner)
  if used + total > cap then return used end
end
redis.call('HSET', quota, id, total)
local job = p .. 'job:' .. id
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', job, unpack(fields))
redis.call('EXPIRE', job, ttl)
local now = now_s()
redis.call('ZADD', p .. 'jobs:status:queued', now + ttl, id)
if ARGV[7] == '1' then
  local owned = p .. 'owner:' .. owner .. ':jobs'
  local t = redis.call('TIME')  -- microseconds: jobs of one second still list newest first
  redis.call('ZADD', owned, tonumber(t[1]) + tonumber(t[2]) / 1e6, id)
  redis.call('ZREMRANGEBYSCORE', owned, '-inf', now - ttl)
  redis.call('EXPIRE', owned, ttl)
end
local data_expires = redis.call('HGET', job, 'data_expires_at') or redis.call('HGET', job, 'expires_at')
redis.call('ZADD', p .. 'jobs:expiry', data_expires, id)
redis.call('ZREM', p .. 'jobs:pending', id)
if tonumber(redis.call('HGET', job, 'chunks')) > 0 then activate(p, id) else settle_check(p, id, now) end
return -1
"""

# The inputs an owner's live jobs hold against its cap (what SUBMIT checks). ARGV: prefix, owner.
QUEUED_INPUTS = LIB + """
return quota_used(ARGV[1], ARGV[2])
"""

# Take the next chunk for a worker of a model: owners with work take turns (fair share), each
# owner's oldest job first. ARGV: prefix, model, worker id, request token. Returns {job id, chunk,
# attempt} or nil.
CLAIM = LIB + """
local p, model, worker, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local again = replayed(p, token)
if again then return again.r end
local base = p .. 'sched:' .. model
local ring = base .. ':ring'
local now = now_s()
for _ = 1, redis.call('LLEN', ring) do
  local owner = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
  if not owner then return nil end
  local owned = base .. ':owner:' .. owner
  while true do
    local id = redis.call('ZRANGE', owned, 0, 0)[1]
    if not id then break end
    local job = p .. 'job:' .. id
    local f = redis.call('HMGET', job, 'status', 'stop_as', 'next', 'chunks', 'expires_at')
    local chunk = nil
    if f[1] and not f[2] and tonumber(f[5]) > 0 and now >= tonumber(f[5]) then
      stop_job(p, id, 'expired', now)
    elseif f[1] == 'queued' or f[1] == 'in_progress' then
      chunk = next_retry(p, id)
      if not chunk and not f[2] and (f[1] == 'queued' or f[1] == 'in_progress')
          and tonumber(f[3]) < tonumber(f[4]) then
        chunk = tostring(redis.call('HINCRBY', job, 'next', 1) - 1)
      end
    end
    if chunk then
      if f[1] == 'queued' then set_status(p, id, 'in_progress', now); redis.call('HSETNX', job, 'started_at', now) end
      local attempts = redis.call('HINCRBY', job .. ':attempts', chunk, 1)
      if attempts > 1 then redis.call('HINCRBY', job, 'reruns', 1) end  -- kept after the per-chunk counts go
      local ttl = redis.call('PTTL', job)
      if ttl > 0 then redis.call('PEXPIRE', job .. ':attempts', ttl) end
      redis.call('HSET', p .. 'held:' .. worker, id .. '|' .. chunk, model)
      if redis.call('LLEN', ring) > 0 then redis.call('LPUSH', base .. ':wake', '1'); redis.call('LTRIM', base .. ':wake', 0, 63) end
      return remember(p, token, {id, chunk, attempts}, ONCE_TTL)
    end
    redis.call('ZREM', owned, id)  -- nothing left to hand out (or gone, or stopped)
  end
  redis.call('LREM', ring, 0, owner)
end
-- Nothing claimed, so nothing to answer a retry with: it may look again (it holds nothing either
-- way). Not remembered: idle slots claim every second, and each answer kept for ONCE_TTL was a key.
return nil
"""

# Record a chunk's outcome once and release it from its worker. ARGV: prefix, id, chunk, worker,
# completed, failed, tokens, dim, request token, then error-sample JSON strings. Returns the job's
# final status, 'compact' (the caller now holds the compaction step), '' (still running), 'gone',
# 'late:<status>' when the job had ended before this finish, which then counted nothing, or
# 'counted:<status>' when it had ended after another run of this chunk was counted.
FINISH = LIB + """
local p, id, chunk, worker, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[9]
local again = replayed(p, token)
if again then return again.r end
local job = p .. 'job:' .. id
redis.call('HDEL', p .. 'held:' .. worker, id .. '|' .. chunk)
local status = redis.call('HGET', job, 'status')
if not status then return remember(p, token, 'gone', ONCE_TTL) end
-- An ended job counts nothing more (its done set may be gone: a late finish must not count again).
-- 'late:' says this chunk was not counted, so its part is no result and its worker deletes it.
-- 'counted:' says another run of it was (this run's worker was reaped, woke up, wrote the part again,
-- the same rows): the part is that run's, part of the ended job's result (a cancelled job, a batch),
-- and stays. An expired job's data is swept, so there the part goes either way.
if status ~= 'queued' and status ~= 'in_progress' and status ~= 'cancelling' then
  -- (':ok' too: a chunk counted by a worker from before ':counted' is only there.)
  if status ~= 'expired' and (redis.call('SISMEMBER', job .. ':counted', chunk) == 1
                              or redis.call('SISMEMBER', job .. ':ok', chunk) == 1) then
    return remember(p, token, 'counted:' .. status, ONCE_TTL)
  end
  return remember(p, token, 'late:' .. status, ONCE_TTL)
end
local now = now_s()
if redis.call('SADD', job .. ':done', chunk) == 1 then
  local ttl = redis.call('PTTL', job)
  if ttl > 0 then redis.call('PEXPIRE', job .. ':done', ttl) end
  -- Counted by a run (':done' also holds chunks settled without one): its part, vectors or only
  -- error rows, is part of the job's result, which a stale run of it must not delete.
  redis.call('SADD', job .. ':counted', chunk)
  if ttl > 0 then redis.call('PEXPIRE', job .. ':counted', ttl) end
  if tonumber(ARGV[5]) > 0 then  -- it has vectors: its rows can stand for later chunks' repeats
    redis.call('SADD', job .. ':ok', chunk)
    if ttl > 0 then redis.call('PEXPIRE', job .. ':ok', ttl) end
  end
  redis.call('HINCRBY', job, 'completed', ARGV[5])
  redis.call('HINCRBY', job, 'failed', ARGV[6])
  redis.call('HINCRBY', job, 'tokens', ARGV[7])
  if tonumber(ARGV[8]) > 0 then redis.call('HSET', job, 'dim', ARGV[8]) end
  if #ARGV >= 10 then
    local errors = job .. ':errors'
    for i = 10, #ARGV do redis.call('RPUSH', errors, ARGV[i]) end
    redis.call('LTRIM', errors, 0, tonumber(redis.call('HGET', job, 'error_sample') or '10') - 1)
    if ttl > 0 then redis.call('PEXPIRE', errors, ttl) end
  end
end
local result = settle_check(p, id, now)
if result == 'compact' then
  redis.call('HSET', p .. 'held:' .. worker, id .. '|c', redis.call('HGET', job, 'model'))
end
return remember(p, token, result or '', ONCE_TTL)
"""

# A native job's results were compacted: end it. ARGV: prefix, id, worker, request token. Returns its
# status, 'gone', or 'lost' when the worker no longer holds the step (it was reaped and the step
# handed to another worker, whose compaction ends the job): the caller must then leave the parts.
FINALIZE = LIB + """
local p, id, worker, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local again = replayed(p, token)
if again then return again.r end
local job = p .. 'job:' .. id
if redis.call('HDEL', p .. 'held:' .. worker, id .. '|c') == 0 then return remember(p, token, 'lost', ONCE_TTL) end
local f = redis.call('HMGET', job, 'status', 'stop_as', 'completed', 'failed')
if not f[1] then return remember(p, token, 'gone', ONCE_TTL) end
redis.call('HSET', job, 'compacted', '1')
if f[1] ~= 'queued' and f[1] ~= 'in_progress' and f[1] ~= 'cancelling' then return remember(p, token, f[1], ONCE_TTL) end
local final = f[2] or ((tonumber(f[3]) == 0 and tonumber(f[4]) > 0) and 'failed' or 'completed')
set_status(p, id, final, now_s())
release_quota(p, id)
-- Per-chunk bookkeeping is done with: Redis keeps a few small keys per finished job, whatever its size.
redis.call('DEL', job .. ':done', job .. ':ok', job .. ':counted', job .. ':attempts', job .. ':retry')
return remember(p, token, final, ONCE_TTL)
"""

# Cancel: queued/in_progress -> cancelling, nothing more handed out; cancelled at once when no
# chunk is running. ARGV: prefix, id. Returns the status after, or nil when the job is gone.
CANCEL = LIB + """
local p, id = ARGV[1], ARGV[2]
local job = p .. 'job:' .. id
local status = redis.call('HGET', job, 'status')
if not status then return nil end
if status ~= 'queued' and status ~= 'in_progress' then return status end
local now = now_s()
set_status(p, id, 'cancelling', now)
stop_job(p, id, 'cancelled', now)
return redis.call('HGET', job, 'status')
"""

# Expire jobs whose data is past its time: stop what runs, show 'expired' for the record's
# remaining grace. ARGV: prefix, then job ids (their data is already deleted from the store).
EXPIRE = LIB + """
local p = ARGV[1]
local now = now_s()
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('EXISTS', p .. 'job:' .. id) == 1 then
    stop_job(p, id, 'expired', now)
    set_status(p, id, 'expired', now)
    release_quota(p, id)
  end
  redis.call('ZREM', p .. 'jobs:expiry', id)
end
return #ARGV - 1
"""
