"""Per-key requests- and tokens-per-minute limits, as token buckets kept atomically in Redis.

Each key has two buckets that hold up to its per-minute limit and refill continuously at
limit/60 per second (so a quiet key may burst its whole minute, and a busy one gets a steady
rate). One Lua script refills both, checks both and takes from both, so concurrent requests on
any number of API processes cannot overspend, and Redis's clock is the only clock. A request
that would overdraw either bucket takes nothing and is told how long to wait.

Tokens are not known before the model tokenizes, so a request is charged an estimate first
(token ids: their count; text: characters / 4, at most the model's max length per input) and
the difference to the real usage is settled afterwards (the bucket may go below zero, which
delays the next request rather than letting the estimate be gamed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

from embedserve import redis_keys

# KEYS[1] bucket hash. ARGV: rpm, tpm, requests to take, tokens to take, force (1 = settle: take
# without checking, may go negative). Returns {allowed, req_left, req_reset_ms, tok_left, tok_reset_ms,
# retry_ms}; *_left are floored, -1 for an unlimited bucket.
_TAKE = """
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local want_req, want_tok, force = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'req', 'tok', 'ts')
local last = tonumber(state[3]) or now
local function level(stored, limit)
  if limit <= 0 then return 0 end
  local value = tonumber(stored) or limit
  return math.min(limit, value + (now - last) * limit / 60000)
end
local req, tok = level(state[1], rpm), level(state[2], tpm)
if tpm > 0 and not force then want_tok = math.min(want_tok, tpm) end
local retry = 0
if not force then
  if rpm > 0 and req < want_req then retry = math.max(retry, (want_req - req) * 60000 / rpm) end
  if tpm > 0 and tok < want_tok then retry = math.max(retry, (want_tok - tok) * 60000 / tpm) end
end
local allowed = retry == 0
if allowed then
  if rpm > 0 then req = req - want_req end
  if tpm > 0 then tok = math.min(tpm, tok - want_tok) end
end
redis.call('HSET', KEYS[1], 'req', tostring(req), 'tok', tostring(tok), 'ts', now)
redis.call('PEXPIRE', KEYS[1], 120000)
local function left(value, limit) if limit <= 0 then return -1 end return math.max(0, math.floor(value)) end
local function reset(value, limit) if limit <= 0 then return 0 end return math.ceil((limit - value) * 60000 / limit) end
return {allowed and 1 or 0, left(req, rpm), reset(req, rpm), left(tok, tpm), reset(tok, tpm), math.ceil(retry)}
"""


@dataclass(frozen=True)
class Decision:
    """The outcome of one take, and what the x-ratelimit-* headers say."""

    allowed: bool
    rpm: int
    tpm: int
    requests_left: int
    requests_reset_ms: int
    tokens_left: int
    tokens_reset_ms: int
    retry_after_s: float

    def headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the limited dimensions."""
        out = {}
        if self.rpm > 0:
            out.update({"x-ratelimit-limit-requests": str(self.rpm),
                        "x-ratelimit-remaining-requests": str(self.requests_left),
                        "x-ratelimit-reset-requests": openai_duration(self.requests_reset_ms)})
        if self.tpm > 0:
            out.update({"x-ratelimit-limit-tokens": str(self.tpm),
                        "x-ratelimit-remaining-tokens": str(self.tokens_left),
                        "x-ratelimit-reset-tokens": openai_duration(self.tokens_reset_ms)})
        return out


def openai_duration(ms: int) -> str:
    """A duration the way OpenAI writes its reset headers: 120ms, 1.5s, 6m0s."""
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes}m{rest}s"


class RateLimiter:
    """Takes from a caller's buckets in Redis; one instance per API process."""

    def __init__(self, client: redis.Redis):
        self._take = client.register_script(_TAKE)

    def take(self, digest_hex: str, rpm: int, tpm: int, tokens: int) -> Decision:
        """Take one request and `tokens` tokens if both buckets allow; otherwise take nothing."""
        return self._run(digest_hex, rpm, tpm, 1, tokens, force=False)

    def settle(self, digest_hex: str, rpm: int, tpm: int, token_delta: int, request_delta: int = 0) -> Decision:
        """Correct the buckets by (actual - estimated) tokens and `request_delta` requests; negative refunds."""
        return self._run(digest_hex, rpm, tpm, request_delta, token_delta, force=True)

    def _run(self, digest_hex, rpm, tpm, req, tok, force) -> Decision:
        allowed, req_left, req_reset, tok_left, tok_reset, retry = self._take(
            keys=[redis_keys.rate_limit(digest_hex)], args=[rpm, tpm, req, tok, 1 if force else 0])
        return Decision(bool(allowed), rpm, tpm, int(req_left), int(req_reset), int(tok_left), int(tok_reset),
                        int(retry) / 1000)
