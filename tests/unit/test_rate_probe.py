"""The first bulk rate (worker/rate_probe.py): measured on the real engine when Redis knows none, used to size the
first job's chunks, and replaced by the accounted rate once job chunks have run."""

from __future__ import annotations

import pytest
import torch

from api.bulk.chunking import limits_for
from embedserve import defaults, redis_keys
from embedserve.fleet import stage_times
from embedserve.fleet.forward_stats import ForwardStats
from worker.engine import EmbeddingEngine, resolve_model_source
from worker.rate_probe import PROBE_TEXTS, probe_bulk_rate


@pytest.fixture(scope="module")
def engine():
    return EmbeddingEngine(resolve_model_source(""), torch.device("cpu"), torch.float32)


def test_a_model_without_a_rate_gets_the_probes_and_its_first_big_job_bigger_chunks(client, engine):
    assert stage_times.bulk_rate(client, "m") is None
    assert limits_for(1_000_000, None)[0] == defaults.JOB_CHUNK_INPUTS  # what a first job was cut into
    calls = []

    def forward(rows):
        calls.append(len(rows))
        return engine.embed_batch(rows)

    rate = probe_bulk_rate(client, "m", engine, forward)
    assert calls == [PROBE_TEXTS] and rate > 0
    assert stage_times.bulk_rate(client, "m") == pytest.approx(rate)
    assert limits_for(1_000_000, rate)[0] > defaults.JOB_CHUNK_INPUTS
    assert probe_bulk_rate(client, "m", engine, forward) is None  # known now: no second pass
    assert calls == [PROBE_TEXTS]


def test_the_accounted_rate_replaces_the_probe_and_a_known_rate_is_not_probed(client, engine):
    stats = ForwardStats(client, "m")
    stats.stages.items(stage_times.BULK, 600)
    stats.record_seconds(stage_times.BULK, 2.0)
    stats.flush()
    assert probe_bulk_rate(client, "m", engine, engine.embed_batch) is None
    client.set(redis_keys.bulk_rate_probe("m"), "5.0")  # an older probe: accounted job chunks win over it
    assert stage_times.bulk_rate(client, "m") == 300.0
