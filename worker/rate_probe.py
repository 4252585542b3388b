"""A model's first bulk rate, measured once, so the first job a fleet runs is cut into chunks of its size.

A job's chunks are sized when it is submitted, by the model's bulk rate: the inputs and forward
seconds its workers accounted on job chunks (api/bulk/chunking.py, embedserve/fleet/stage_times.py).
Before any job ran there is no rate, and the job was cut into JOB_CHUNK_INPUTS-input chunks: 200,000
inputs as 6,250 chunks, each paying a claim, a spec read, a part write and a finish, where a measured
rate would have given 261 (docs/benchmarks.md has what that cost). So a worker that finds no rate for
its model times one pass of PROBE_TEXTS fixed texts on its model thread before it serves, and stores
the rate beside the accounted ones; accounted job chunks replace it as soon as there are any. The
figures in Redis outlive workers, so only the first worker ever started for a model pays the pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import redis

from embedserve import redis_keys
from embedserve.fleet import stage_times
from worker.calibration import calibration_texts

log = logging.getLogger(__name__)

# Texts in the probe pass: a CPU's bulk pass (0.4 s for MiniLM on 2 cores). A GPU runs bigger passes
# faster per text, so there the probe under-reads the rate: chunks err on the small side until job
# chunks have been accounted.
PROBE_TEXTS = 128


def probe_bulk_rate(client: redis.Redis, model: str, engine, forward: Callable[[list[list[int]]], np.ndarray]
                    ) -> float | None:
    """Measure and store `model`'s bulk rate when Redis has none: `engine` (an EmbeddingEngine) tokenizes the
    probe's texts, `forward` embeds them as the batcher would. Returns the rate measured, or None when one was
    known already. Call it on the thread that runs the model's forwards (worker/model_thread.py)."""
    if stage_times.bulk_rate(client, model) is not None:
        return None
    rows = engine.tokenize(calibration_texts(PROBE_TEXTS), offset=0, input_type="document", instruction=None,
                           truncate=True).rows
    started = time.perf_counter()
    forward(rows)
    rate = len(rows) / max(time.perf_counter() - started, 1e-6)
    # nx: of workers started together, the first to finish sets it; the others' figures would be as good.
    client.set(redis_keys.bulk_rate_probe(model), repr(rate), nx=True)
    log.info("no bulk rate known for %s yet: a probe pass of %d texts ran at %.0f inputs/s of forward; new jobs' "
             "chunks are sized by it until job chunks have been accounted", model, len(rows), rate)
    return rate
