"""Seconds spent in each stage of a path through a worker (a bulk chunk: claim, read, tokenize, forward,
write, finish), as Prometheus histograms that every worker of a model adds up in Redis.

Without a stage account, "the service is slower than the model" says nothing about where the time
goes. A stage is timed by whoever runs it and recorded here in memory (no I/O on the hot path);
the worker's statistics flusher (embedserve/fleet/forward_stats.py) sends the counts with its own
pipeline, and the API's /metrics reads the bulk path's back as `embedserve_bulk_stage_seconds{model,stage}`.
The items a path moved are counted too (`embedserve_bulk_inputs_total`): seconds per input is what
compares a machinery stage with the model's own cost per input.

Fields of the hash `redis_keys.stage_seconds(model)`: "<path>|<stage>|<le>" bucket counts (integers,
not cumulative), "<path>|<stage>|sum" and "<path>|items" (floats: HINCRBYFLOAT).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from embedserve import redis_keys

# Path names: a job chunk through a bulk slot.
BULK = "bulk"
# Upper bounds (seconds) of the stage histograms: a Redis round trip is ~0.2 ms, a forward of a big
# chunk on a CPU some seconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class StageTimes:
    """Stage observations in memory until drained; thread-safe, cheap."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._sums: Counter[str] = Counter()

    def record(self, path: str, stage: str, seconds: float) -> None:
        index = bisect.bisect_left(BUCKETS, seconds)
        bound = str(BUCKETS[index]) if index < len(BUCKETS) else "+Inf"
        with self._lock:
            self._counts[f"{path}|{stage}|{bound}"] += 1
            self._sums[f"{path}|{stage}|sum"] += seconds

    def items(self, path: str, count: int) -> None:
        """`count` items (inputs) went through `path`."""
        with self._lock:
            self._sums[f"{path}|items"] += count

    @contextmanager
    def timed(self, path: str, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.record(path, stage, time.perf_counter() - started)

    def drain(self) -> tuple[Counter[str], Counter[str]]:
        """What was recorded since the last drain: (bucket counts, float sums)."""
        with self._lock:
            counts, sums = self._counts, self._sums
            self._counts, self._sums = Counter(), Counter()
        return counts, sums

    def restore(self, counts: Counter[str], sums: Counter[str]) -> None:
        """Put back what a failed flush drained, for the next one."""
        with self._lock:
            self._counts.update(counts)
            self._sums.update(sums)


@dataclass(frozen=True)
class StageHistogram:
    buckets: dict[str, int]  # bound -> observations in that bucket alone
    sum: float
    count: int


def read(client: redis.Redis, model: str) -> tuple[dict[tuple[str, str], StageHistogram], dict[str, float]]:
    """Every worker's stage histograms for `model` by (path, stage), and items by path."""
    raw = {k.decode(): v for k, v in client.hgetall(redis_keys.stage_seconds(model)).items()}
    buckets: dict[tuple[str, str], dict[str, int]] = {}
    sums: dict[tuple[str, str], float] = {}
    items: dict[str, float] = {}
    for field, value in raw.items():
        parts = field.split("|")
        if len(parts) == 2 and parts[1] == "items":
            items[parts[0]] = float(value)
        elif len(parts) == 3 and parts[2] == "sum":
            sums[(parts[0], parts[1])] = float(value)
        elif len(parts) == 3:
            buckets.setdefault((parts[0], parts[1]), {})[parts[2]] = int(value)
    histograms = {key: StageHistogram(counts, sums.get(key, 0.0), sum(counts.values()))
                  for key, counts in buckets.items()}
    return histograms, items


def bulk_rate(client: redis.Redis, model: str) -> float | None:
    """Inputs per second of a worker's forward on job chunks of `model`, over everything its workers have
    accounted; before any job ran, the rate its first worker measured on a probe pass (worker/rate_probe.py);
    None when neither is known. What sizes a new job's chunks (api/bulk/chunking.py)."""
    pipe = client.pipeline(transaction=False)
    pipe.hget(redis_keys.stage_seconds(model), f"{BULK}|items")
    pipe.hget(redis_keys.forward_seconds(model), BULK)
    pipe.get(redis_keys.bulk_rate_probe(model))
    items, seconds, probed = pipe.execute()
    if items is None or not seconds or float(seconds) <= 0:
        return float(probed) if probed else None
    return float(items) / float(seconds)
