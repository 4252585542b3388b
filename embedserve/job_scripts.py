"""Lua scripts of the job store: each state change of a job is one atomic step in Redis.

Atomic matters for exactly-once counting: a chunk finished by two workers (a redelivery racing
the original) must move the counters once, and the job must end exactly when its last chunk
is counted, whoever counts it.

Every status change also moves the job's id between the per-status sorted sets
(`keys.jobs_by_status`, scored by the job hash's expiry time), so /metrics can count jobs by
status with one ZCOUNT per status instead of scanning jobs. The scripts get those sets as their
last KEYS, in `STATUS_ORDER`.
"""

# The order of the per-status index keys at the end of each script's KEYS (JobStatus values).
STATUS_ORDER = ("queued", "in_progress", "completed", "failed", "cancelling", "cancelled", "expired")

# Prepended to every script: move the job (KEYS[1]) from its old status's set to the new one's.
# `first` is the KEYS position of the first status set; `now` is unix seconds.
_MOVE = """
local STATUSES = {%s}
local function move_status(first, old, new, now)
  local id = redis.call('HGET', KEYS[1], 'id')
  if not id then return end
  local ttl = redis.call('PTTL', KEYS[1])
  local expires = tonumber(now) + (ttl > 0 and math.ceil(ttl / 1000) or 0)
  for i, name in ipairs(STATUSES) do
    if name == old then redis.call('ZREM', KEYS[first + i - 1], id) end
    if name == new then redis.call('ZADD', KEYS[first + i - 1], expires, id) end
  end
end
""" % ", ".join(f"'{s}'" for s in STATUS_ORDER)

# Start a chunk: note the job as started, count the attempt. Returns {status, attempts, done?}.
START = _MOVE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', 0, 0} end
local status = redis.call('HGET', KEYS[1], 'status')
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return {status, 0, 1} end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'in_progress')
  move_status(4, 'queued', 'in_progress', ARGV[2])
  redis.call('HSETNX', KEYS[1], 'started_at', ARGV[2])
  status = 'in_progress'
end
local attempts = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
return {status, attempts, 0}
"""

# Finish a chunk once: store its output (if any), count it only if SADD says it is new, and end
# the job when every chunk is done. KEYS: job, done, out, errors. ARGV: chunk, output (or ''),
# completed, failed, tokens, dim, now, skipped (1 when cancelled/expired), error sample JSON...
FINISH = _MOVE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then ttl = 1000 end
if ARGV[2] ~= '' then redis.call('SET', KEYS[3], ARGV[2], 'PX', ttl) end
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('HINCRBY', KEYS[1], 'completed', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'failed', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[5])
  if tonumber(ARGV[6]) > 0 then redis.call('HSET', KEYS[1], 'dim', ARGV[6]) end
  if ARGV[8] == '1' then redis.call('HINCRBY', KEYS[1], 'skipped', 1) end
  for i = 9, #ARGV do redis.call('RPUSH', KEYS[4], ARGV[i]) end
  if #ARGV >= 9 then
    redis.call('LTRIM', KEYS[4], 0, tonumber(redis.call('HGET', KEYS[1], 'error_sample')) - 1)
    redis.call('PEXPIRE', KEYS[4], ttl)
  end
end
local done = redis.call('SCARD', KEYS[2])
if done >= tonumber(redis.call('HGET', KEYS[1], 'chunks')) then
  local status = redis.call('HGET', KEYS[1], 'status')
  local final = nil
  if status == 'cancelling' then final = 'cancelled'
  elseif status == 'queued' or status == 'in_progress' then
    local completed = tonumber(redis.call('HGET', KEYS[1], 'completed'))
    if tonumber(redis.call('HGET', KEYS[1], 'skipped') or '0') > 0 then final = 'expired'
    elseif completed == 0 and tonumber(redis.call('HGET', KEYS[1], 'failed')) > 0 then final = 'failed'
    else final = 'completed' end
  end
  if final then
    redis.call('HSET', KEYS[1], 'status', final)
    move_status(5, status, final, ARGV[7])
    local stamp = final .. '_at'
    redis.call('HSETNX', KEYS[1], stamp, ARGV[7])
  end
end
return done
"""

# Ask a running job to stop: queued/in_progress -> cancelling; a job with nothing left -> cancelled.
CANCEL = _MOVE + """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'in_progress' then return status end
redis.call('HSET', KEYS[1], 'status', 'cancelling', 'cancelling_at', ARGV[1])
if redis.call('SCARD', KEYS[2]) >= tonumber(redis.call('HGET', KEYS[1], 'chunks')) then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancelled_at', ARGV[1])
  move_status(3, status, 'cancelled', ARGV[1])
  return 'cancelled'
end
move_status(3, status, 'cancelling', ARGV[1])
return 'cancelling'
"""
