"""Forward-pass statistics (rows and padded tokens per batch, forward seconds by priority), embedding-cache
outcomes and stage times (embedserve/fleet/stage_times.py), added up in Redis by every worker.

Workers push their counts to Redis instead of serving their own metrics port: scaled compose
workers have no stable addresses for Prometheus to find, counts in Redis survive worker
restarts, and one scrape of the API's /metrics shows every model. The forward thread only adds
to in-memory counters; a flusher thread sends them every BATCH_STATS_FLUSH_S with one pipeline.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import Counter
from dataclasses import dataclass

import redis

from embedserve import defaults, redis_keys
from embedserve.fleet.stage_times import StageTimes

log = logging.getLogger(__name__)


def _bucket(value: int, bounds: tuple[int, ...]) -> str:
    """The field of the smallest bucket bound >= value ("+Inf" above all)."""
    index = bisect.bisect_left(bounds, value)
    return str(bounds[index]) if index < len(bounds) else "+Inf"


class ForwardStats:
    """Counts batches in memory and flushes them to `redis_keys.batch_stats(model)` in the background."""

    def __init__(self, client: redis.Redis, model: str, flush_s: float = defaults.BATCH_STATS_FLUSH_S):
        self._redis = client
        self._key = redis_keys.batch_stats(model)
        self._seconds_key = redis_keys.forward_seconds(model)
        self._stages_key = redis_keys.stage_seconds(model)
        self._cache_key = redis_keys.cache_stats(model)
        self.stages = StageTimes()  # the stages' timers record here; flushed with the rest
        self._flush_s = flush_s
        self._pending: Counter[str] = Counter()
        self._seconds: Counter[str] = Counter()  # forward seconds by priority name: floats, HINCRBYFLOAT
        self._cache: Counter[str] = Counter()  # embedding-cache outcomes: hits, misses, errors
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-stats", daemon=True)

    def record(self, rows: int, padded_tokens: int) -> None:
        """Called by the forward thread after each pass; cheap (no I/O)."""
        with self._lock:
            self._pending["count"] += 1
            self._pending["rows_sum"] += rows
            self._pending["tokens_sum"] += padded_tokens
            self._pending["rows:" + _bucket(rows, defaults.BATCH_ROWS_BUCKETS)] += 1
            self._pending["tokens:" + _bucket(padded_tokens, defaults.BATCH_TOKENS_BUCKETS)] += 1

    def record_seconds(self, priority: str, seconds: float) -> None:
        """Forward time spent on rows of `priority` ("interactive" or "bulk"); called by the forward thread."""
        with self._lock:
            self._seconds[priority] += seconds

    def record_cache(self, outcome: str, inputs: int) -> None:
        """Inputs found in or missing from the embedding cache, or failed cache calls (worker/cache/); no I/O."""
        if inputs:
            with self._lock:
                self._cache[outcome] += inputs

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the flusher after one last flush."""
        self._stop.set()
        self._thread.join(5)
        self.flush()

    def flush(self) -> None:
        """Send the counts gathered since the last flush (kept for the next try if Redis fails)."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
            seconds, self._seconds = self._seconds, Counter()
            cache, self._cache = self._cache, Counter()
        stage_counts, stage_sums = self.stages.drain()
        if not pending and not seconds and not stage_counts and not stage_sums and not cache:
            return
        try:
            pipe = self._redis.pipeline(transaction=True)
            for field, amount in pending.items():
                pipe.hincrby(self._key, field, amount)
            for priority, amount in seconds.items():
                pipe.hincrbyfloat(self._seconds_key, priority, amount)
            for field, amount in stage_counts.items():
                pipe.hincrby(self._stages_key, field, amount)
            for field, amount in stage_sums.items():
                pipe.hincrbyfloat(self._stages_key, field, amount)
            for field, amount in cache.items():
                pipe.hincrby(self._cache_key, field, amount)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not push batch statistics: %s", exc)
            with self._lock:
                self._pending.update(pending)
                self._seconds.update(seconds)
                self._cache.update(cache)
            self.stages.restore(stage_counts, stage_sums)

    def _run(self) -> None:
        while not self._stop.wait(self._flush_s):
            self.flush()


@dataclass(frozen=True)
class ForwardHistograms:
    """One model's totals as read back from Redis: per-bucket counts, sums and the batch count."""

    rows: dict[str, int]
    tokens: dict[str, int]
    rows_sum: int
    tokens_sum: int
    count: int
    seconds: dict[str, float]  # forward seconds by priority ("interactive", "bulk")
    cache: dict[str, int]  # embedding-cache outcomes: hits, misses, errors (absent: none yet)


def read(client: redis.Redis, model: str) -> ForwardHistograms:
    """What all workers of `model` have pushed."""
    pipe = client.pipeline(transaction=False)  # one round trip for both hashes
    pipe.hgetall(redis_keys.batch_stats(model))
    pipe.hgetall(redis_keys.forward_seconds(model))
    pipe.hgetall(redis_keys.cache_stats(model))
    counts, times, cache = pipe.execute()
    raw = {k.decode(): int(v) for k, v in counts.items()}
    seconds = {k.decode(): float(v) for k, v in times.items()}
    rows = {f.split(":", 1)[1]: n for f, n in raw.items() if f.startswith("rows:")}
    tokens = {f.split(":", 1)[1]: n for f, n in raw.items() if f.startswith("tokens:")}
    return ForwardHistograms(rows, tokens, raw.get("rows_sum", 0), raw.get("tokens_sum", 0), raw.get("count", 0),
                             seconds, {k.decode(): int(v) for k, v in cache.items()})
