"""Run a validated request on its model's workers: cut it into chunks, have them sent, gather the replies.

Large requests are cut into chunks so all live workers (and all their task threads) share
the work; each chunk's result is pushed by the worker to one reply list that this request
BLPOPs. Embeddings and reranking share this path: only the task, the queue and the payload of a
chunk differ.

This module splits, waits and gathers; it never sends. Every send of a chunk, the first and any
again, is api/inflight.py's, so what a send is and how many a chunk had are decided in one place.
While the request waits it has, every few seconds, the chunks of workers that died sent again,
and another worker answers. A chunk counts once: replies are keyed by chunk number, a late
duplicate is ignored.

With no live worker for the model (scaled to zero, all restarting), the chunks are queued anyway
and the request waits up to EMBED_COLD_START_TIMEOUT for a worker to come up (an autoscaler sees
the queue grow), then answers 503 with Retry-After.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from api import stage_account
from api.inflight import ChunksInFlight, Slice
from api.validation.embeddings import EmbeddingRequest
from api.validation.rerank import RerankRequest
from embedserve import defaults
from embedserve.errors import ServiceError, Timeout, Unavailable
from embedserve.fleet.liveness import Liveness
from embedserve.fleet.registry import ModelKind, ServedModel
from embedserve.protocol import (
    EMBED_TASK,
    RERANK_TASK,
    TOKENIZE_TASK,
    ChunkResult,
    EmbedChunk,
    RerankChunk,
    TokenizeChunk,
    interactive_queue,
    rerank_queue,
)
from embedserve.publish import QueueFull, TaskPublisher
from embedserve.settings import Settings
from embedserve.vector_types import FLOAT

# Seconds a client is told to wait when no worker came up for the model in time.
NO_WORKER_RETRY_AFTER_S = 5
# The error code of a request refused because its model's queue was too deep (EMBED_MAX_QUEUE).
QUEUE_FULL = "queue_full"


@dataclass(frozen=True)
class Dispatched:
    """The ordered chunk results of one request (vectors, or one score per document), and its tokens."""

    chunks: list[ChunkResult]
    tokens: int

    @property
    def cached(self) -> int | None:
        """Inputs served from the embedding cache; None when no chunk's worker has one."""
        counts = [chunk.cached for chunk in self.chunks if chunk.cached is not None]
        return sum(counts) if counts else None


def sync_slices(total: int, workers: int) -> list[tuple[int, int]]:
    """(start, end) slices, about one per worker (none live: as for one), each within MIN/MAX_SYNC_CHUNK inputs."""
    size = math.ceil(total / max(1, workers))
    size = max(defaults.MIN_SYNC_CHUNK, min(defaults.MAX_SYNC_CHUNK, size))
    return [(start, min(total, start + size)) for start in range(0, total, size)]


class Dispatcher:
    """Cuts a request into chunks, has them sent (ChunksInFlight) and waits for their replies, bounded by a timeout.

    A request is refused whole or sent whole: over EMBED_MAX_QUEUE chunks queued, nothing is sent.
    """

    def __init__(self, publisher: TaskPublisher, client: redis.Redis, liveness: Liveness, settings: Settings):
        self._publisher = publisher
        self._redis = client
        self._liveness = liveness
        self._timeout = settings.sync_timeout
        self._cold_start = settings.cold_start_timeout
        self._max_queue = settings.max_queue

    def embed(self, req: EmbeddingRequest, served: ServedModel, request_id: str | None = None,
              cache_scope: str = "") -> Dispatched:
        """Embed every input of `req` with `served`; raises ServiceError on any failure.

        `cache_scope` (embedserve/cache_scope.py) names the caller's embedding-cache entries."""
        def payload(s: Slice) -> dict:
            return EmbedChunk(
                request_id=s.request_id, reply_to=s.reply_to, chunk=s.index, offset=s.start,
                inputs=req.inputs[s.start:s.end], deadline=s.deadline, input_type=req.input_type,
                instruction=req.instruction, truncate=req.truncate, dimensions=req.dimensions,
                embedding_types=list(req.embedding_types),
                truncation_direction=req.truncation_direction, max_tokens=req.max_tokens,
                long_input=req.long_input, window_overlap=req.window_overlap, cache_scope=cache_scope).to_wire()

        result = self._scatter(served, EMBED_TASK, interactive_queue(served.card.name), len(req.inputs), payload,
                               request_id)
        for chunk in result.chunks:
            missing = [kind for kind in req.embedding_types if kind != FLOAT and kind not in (chunk.typed or {})]
            if missing:  # a worker from before embedding_type answered floats only
                raise Unavailable(f"A worker of model '{served.card.name}' is too old to produce "
                                  f"{', '.join(missing)} vectors; retry once the workers are upgraded.",
                                  code="worker_outdated", retry_after=NO_WORKER_RETRY_AFTER_S)
            if req.long_input == "windows" and chunk.rows and chunk.windows is None:  # a worker from before windows
                raise Unavailable(f"A worker of model '{served.card.name}' is too old to answer windows; retry once "
                                  f"the workers are upgraded.", code="worker_outdated",
                                  retry_after=NO_WORKER_RETRY_AFTER_S)
        return result

    def rerank(self, req: RerankRequest, served: ServedModel, request_id: str | None = None) -> Dispatched:
        """Score every document of `req` against its query with `served`; one score row per document."""
        def payload(s: Slice) -> dict:
            return RerankChunk(
                request_id=s.request_id, reply_to=s.reply_to, chunk=s.index, offset=s.start, query=req.query,
                documents=req.documents[s.start:s.end], deadline=s.deadline, instruction=req.instruction,
                truncate=req.truncate, truncation_direction=req.truncation_direction).to_wire()

        return self._scatter(served, RERANK_TASK, rerank_queue(served.card.name), len(req.documents), payload,
                             request_id)

    def tokenize(self, served: ServedModel, request_id: str | None = None, **fields) -> dict:
        """One /tokenize or /detokenize (`fields` of a TokenizeChunk) on a worker of `served`; the worker's answer.

        One chunk on the model's sync queue, whatever its kind, so it shares the cold-start wait, the
        queue limit and the rescue from a dead worker with the model's other sync work.
        """
        def payload(s: Slice) -> dict:
            return TokenizeChunk(request_id=s.request_id, reply_to=s.reply_to, chunk=s.index, deadline=s.deadline,
                                 **fields).to_wire()

        name = served.card.name
        queue = rerank_queue(name) if served.card.kind == ModelKind.RERANK else interactive_queue(name)
        return self._scatter(served, TOKENIZE_TASK, queue, 1, payload, request_id).chunks[0].answer

    def _scatter(self, served: ServedModel, task: str, queue: str, total: int,
                 payload: Callable[[Slice], dict], request_id: str | None) -> Dispatched:
        """Cut `total` inputs into chunks of `task` for `queue`, have them sent, then gather the replies in order.

        `request_id` is the client-visible x-request-id, for the workers' logs.
        """
        cold = served.live_workers == 0
        # A cold start may take most of its own wait before the first worker is up.
        wait = max(self._timeout, self._cold_start) if cold else self._timeout
        flight = ChunksInFlight(self._redis, self._liveness, self._publisher, task=task, queue=queue,
                                slices=sync_slices(total, served.live_workers), payload=payload,
                                deadline=time.time() + wait, request_id=request_id)
        publish_started = time.perf_counter()
        try:
            flight.send(max_depth=self._max_queue)
        except QueueFull as full:
            raise Unavailable(f"Model '{served.card.name}' has {full.depth} chunks queued (limit {self._max_queue}, "
                              f"EMBED_MAX_QUEUE); retry shortly.", code=QUEUE_FULL,
                              retry_after=defaults.QUEUE_FULL_RETRY_AFTER_S) from None
        published = time.perf_counter()
        try:
            results, last, popped_wall = self._collect(flight)
        except BaseException as failure:
            flight.drop()
            if (isinstance(failure, Timeout) and cold
                    and not self._liveness.live_counts([served.card.name]).get(served.card.name)):
                raise Unavailable(f"No worker is serving model '{served.card.name}' yet and none came up within "
                                  f"{self._cold_start:g} seconds (EMBED_COLD_START_TIMEOUT); retry shortly.",
                                  code="no_worker", retry_after=NO_WORKER_RETRY_AFTER_S) from None
            raise
        stage_account.note(publish_started, published, flight.sent_at(last.chunk), last, popped_wall)
        # The reply list emptied itself; the claims hash expires with REPLY_TTL_S.
        for result in results:  # the first failing chunk, in input order, speaks for the request
            if result.error is not None:
                raise ServiceError.from_payload(result.error, result.status)
        return Dispatched(results, sum(r.tokens for r in results))

    def _collect(self, flight: ChunksInFlight) -> tuple[list[ChunkResult], ChunkResult, float]:
        """Pop replies until every chunk answered; every `check_every` s, rescue chunks of dead workers.

        Returns the results in chunk order, and the one that came last with when it was popped (wall clock).
        """
        by_chunk: dict[int, ChunkResult] = {}
        last, popped_wall = None, 0.0
        next_check = time.monotonic() + flight.check_every
        while len(by_chunk) < len(flight):
            remaining = flight.deadline - time.time()
            if remaining <= 0:
                raise Timeout(f"The request did not finish within {self._timeout:g} seconds "
                              f"(EMBED_SYNC_TIMEOUT); the workers may be overloaded.")
            popped = self._redis.blpop([flight.reply_key], timeout=max(0.01, min(remaining, flight.check_every)))
            if popped is not None:
                popped_at = time.time()
                result = ChunkResult.unpack(popped[1])
                if result.chunk not in by_chunk:
                    by_chunk[result.chunk] = last = result
                    popped_wall = popped_at
            if time.monotonic() >= next_check and len(by_chunk) < len(flight):
                flight.rescue(set(by_chunk))
                next_check = time.monotonic() + flight.check_every
        return [by_chunk[i] for i in range(len(flight))], last, popped_wall
