"""The sync path's stage account: where one request's time went, from receipt to answer, as a /metrics histogram.

Stages, in the order a request passes them (docs/observability.md says what each holds):
receive, publish, to_worker, claim, tokenize, batch_wait, forward, wake, encode, back, answer.
The API measures receive, publish and answer itself; the worker measures claim..encode on its own
clock and sends them in the reply (worker/stage_clock.py). The rest, the time between the two
processes, is the chunk's round trip less the worker's span: both durations, so it holds across
hosts whose clocks differ. It is split into to_worker (queue, broker, Celery's hand-off to a task
thread) and back (reply push, the API's wake-up) by the worker's wall-clock pick-up mark, clamped
to the round trip, so on one host the split is exact and across hosts only the split can be off.

A request of several chunks is accounted by the chunk that came last, the one it waited for, so
each stage counts once per request and the stages add up to its time.
"""

from __future__ import annotations

import time

from flask import g, has_request_context
from prometheus_client import Histogram

from embedserve.protocol import ChunkResult

STAGES = ("receive", "publish", "to_worker", "claim", "tokenize", "batch_wait", "forward", "wake", "encode", "back",
          "answer")
WORKER_STAGES = ("claim", "tokenize", "batch_wait", "forward", "wake", "encode")
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)

# Not registered in prometheus_client's global registry: /metrics builds the registry it serves.
STAGE_SECONDS = Histogram("embedserve_sync_stage_seconds", "Seconds a successful sync request spent in each stage "
                          "of the sync path (the chunk it waited for last).", ["stage"], buckets=STAGE_BUCKETS,
                          registry=None)
_KEY = "sync_stages"


def note(publish_started: float, published: float, sent_wall: float, last: ChunkResult, popped_wall: float) -> None:
    """Keep a dispatched request's stages for `observe` (perf_counter marks, except the *_wall ones)."""
    if not has_request_context():
        return
    stages = {"publish": published - publish_started}
    worker = last.stages or {}
    if all(key in worker for key in ("picked_at", "replied_at")):
        span = worker["replied_at"] - worker["picked_at"]
        transit = max(0.0, popped_wall - sent_wall - span)
        stages["to_worker"] = min(transit, max(0.0, worker["picked_at"] - sent_wall))
        stages.update((key, worker[key]) for key in WORKER_STAGES if key in worker)
        stages["back"] = transit - stages["to_worker"]
    setattr(g, _KEY, (publish_started, stages, time.perf_counter()))


def observe(request_started: float) -> None:
    """Count the request's stages, if it dispatched any, adding receive and answer (called once it is answered)."""
    kept = g.pop(_KEY, None)
    if kept is None:
        return
    publish_started, stages, replied = kept
    stages = {"receive": publish_started - request_started, **stages, "answer": time.perf_counter() - replied}
    for stage in STAGES:
        if stage in stages:
            STAGE_SECONDS.labels(stage).observe(max(0.0, stages[stage]))
