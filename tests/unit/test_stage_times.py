"""The workers' stage account (embedserve/fleet/stage_times.py): what they flush to Redis is what the API reads back,
and the bulk rate a new job's chunks are sized by comes from it."""

from __future__ import annotations

from embedserve.fleet import stage_times
from embedserve.fleet.forward_stats import ForwardStats


def test_flushed_stages_read_back_as_histograms_and_a_rate(redis_server):
    client = redis_server.client()
    client.flushall()
    assert stage_times.bulk_rate(client, "m") is None  # nothing measured: new jobs get the small chunks
    stats = ForwardStats(client, "m")
    stats.stages.record(stage_times.BULK, "read", 0.002)
    stats.stages.record(stage_times.BULK, "read", 0.0004)
    stats.stages.record(stage_times.BULK, "write", 99.0)  # past the last bound: +Inf
    stats.stages.items(stage_times.BULK, 300)
    stats.record_seconds(stage_times.BULK, 1.5)  # the forward thread's seconds on bulk passes
    stats.flush()
    stats.stages.items(stage_times.BULK, 100)
    stats.record_seconds(stage_times.BULK, 0.5)
    stats.flush()  # counts add up across flushes (and across workers)

    histograms, items = stage_times.read(client, "m")
    read = histograms[(stage_times.BULK, "read")]
    assert read.count == 2 and abs(read.sum - 0.0024) < 1e-9
    assert read.buckets == {"0.0005": 1, "0.0025": 1}
    assert histograms[(stage_times.BULK, "write")].buckets == {"+Inf": 1}
    assert items == {stage_times.BULK: 400.0}
    assert stage_times.bulk_rate(client, "m") == 200.0  # 400 inputs in 2 s of forward


def test_a_failed_flush_keeps_the_stages_for_the_next(redis_server):
    client = redis_server.client()
    client.flushall()
    stats = ForwardStats(client, "m")
    stats.stages.record(stage_times.BULK, "claim", 0.001)
    redis_server.stop()
    try:
        stats.flush()  # Redis is down: logged, kept
    finally:
        redis_server.restart()
    stats.flush()
    assert stage_times.read(redis_server.client(), "m")[0][(stage_times.BULK, "claim")].count == 1
