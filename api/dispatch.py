"""Send a validated request to its model's workers through Celery and collect the replies.

Large requests are cut into chunks so all live workers (and all their task threads) share
the work; each chunk's result is pushed by the worker to one reply list that this request
BLPOPs, so the wait is one blocking call per chunk and no polling. Embeddings and reranking
share this path: only the task, the queue and the payload of a chunk differ.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import redis

from embedserve import defaults, keys
from embedserve.errors import ServiceError, Timeout, Unavailable
from embedserve.publish import QueueFull, TaskPublisher
from embedserve.protocol import (EMBED_TASK, RERANK_TASK, ChunkResult, EmbedChunk, RerankChunk, interactive_queue,
                                 rerank_queue)
from embedserve.registry import ServedModel

from api.rerank_validation import RerankRequest
from api.validation import EmbeddingRequest

# Seconds a client is told to wait when no worker serves the model.
NO_WORKER_RETRY_AFTER_S = 5
# The error code of a request refused because its model's queue was too deep (EMBED_MAX_QUEUE).
QUEUE_FULL = "queue_full"


@dataclass(frozen=True)
class Embedded:
    """The ordered chunk results of one request (vectors, or one score per document), and its tokens."""

    chunks: list[ChunkResult]
    tokens: int


@dataclass(frozen=True)
class _Slice:
    """What a chunk payload builder gets: where the chunk goes and which inputs it holds."""

    request_id: str
    reply_to: str
    index: int
    start: int
    end: int
    deadline: float


def chunk_bounds(total: int, workers: int) -> list[tuple[int, int]]:
    """(start, end) slices: about one chunk per worker, within MIN/MAX_SYNC_CHUNK inputs each."""
    size = math.ceil(total / max(1, workers))
    size = max(defaults.MIN_SYNC_CHUNK, min(defaults.MAX_SYNC_CHUNK, size))
    return [(start, min(total, start + size)) for start in range(0, total, size)]


class Dispatcher:
    """Sends chunks to a model's queue and waits for them, bounded by a timeout.

    All of a request's chunks go out in one round trip that first checks the queue's depth
    (backpressure, EMBED_MAX_QUEUE; 0 = none): a request is refused whole or sent whole.
    """

    def __init__(self, publisher: TaskPublisher, client: redis.Redis, timeout: float, max_queue: int = 0):
        self._publisher = publisher
        self._redis = client
        self._timeout = timeout
        self._max_queue = max_queue

    def embed(self, req: EmbeddingRequest, served: ServedModel, request_id: str | None = None) -> Embedded:
        """Embed every input of `req` with `served`; raises ServiceError on any failure."""
        def payload(s: _Slice) -> dict:
            return EmbedChunk(
                request_id=s.request_id, reply_to=s.reply_to, chunk=s.index, offset=s.start,
                inputs=req.inputs[s.start:s.end], deadline=s.deadline, input_type=req.input_type,
                instruction=req.instruction, truncate=req.truncate, dimensions=req.dimensions).to_wire()

        return self._scatter(served, EMBED_TASK, interactive_queue(served.card.name), len(req.inputs), payload,
                             request_id)

    def rerank(self, req: RerankRequest, served: ServedModel, request_id: str | None = None) -> Embedded:
        """Score every document of `req` against its query with `served`; one score row per document."""
        def payload(s: _Slice) -> dict:
            return RerankChunk(
                request_id=s.request_id, reply_to=s.reply_to, chunk=s.index, offset=s.start, query=req.query,
                documents=req.documents[s.start:s.end], deadline=s.deadline, instruction=req.instruction,
                truncate=req.truncate).to_wire()

        return self._scatter(served, RERANK_TASK, rerank_queue(served.card.name), len(req.documents), payload,
                             request_id)

    def _scatter(self, served: ServedModel, task: str, queue: str, total: int,
                 payload: Callable[[_Slice], dict], request_id: str | None) -> Embedded:
        """Send `total` inputs as chunks of `task` to `queue`, then gather the replies in order.

        `request_id` (the client-visible x-request-id) travels in the chunks for the workers' logs;
        reply lists and task ids use a fresh id, so two requests sent with the same id never mix.
        """
        if served.live_workers == 0:
            raise Unavailable(f"No worker is serving model '{served.card.name}' right now; retry shortly.",
                              code="no_worker", retry_after=NO_WORKER_RETRY_AFTER_S)
        internal_id = uuid.uuid4().hex
        request_id = request_id or internal_id
        reply_key = keys.reply(internal_id)
        deadline = time.time() + self._timeout
        bounds = chunk_bounds(total, served.live_workers)
        messages = [self._publisher.message(task, [payload(_Slice(request_id, reply_key, index, start, end, deadline))],
                                            queue, task_id=f"{internal_id}-{index}", expires_s=self._timeout)
                    for index, (start, end) in enumerate(bounds)]
        try:
            self._publisher.publish(queue, messages, max_depth=self._max_queue)
        except QueueFull as full:
            raise Unavailable(f"Model '{served.card.name}' has {full.depth} chunks queued (limit {self._max_queue}, "
                              f"EMBED_MAX_QUEUE); retry shortly.", code=QUEUE_FULL,
                              retry_after=defaults.QUEUE_FULL_RETRY_AFTER_S) from None
        try:
            results = self._collect(reply_key, len(bounds), deadline)
        except BaseException:
            self._redis.delete(reply_key)  # drop what did arrive; a late push expires (REPLY_TTL_S)
            raise
        # No DELETE on success: popping the last reply left the list empty, and Redis removes
        # empty lists itself. That saves one round trip per request.
        for result in results:  # the first failing chunk, in input order, speaks for the request
            if result.error is not None:
                raise ServiceError.from_payload(result.error, result.status)
        return Embedded(results, sum(r.tokens for r in results))

    def _collect(self, reply_key: str, expected: int, deadline: float) -> list[ChunkResult]:
        by_chunk: dict[int, ChunkResult] = {}
        while len(by_chunk) < expected:
            remaining = deadline - time.time()
            popped = self._redis.blpop([reply_key], timeout=remaining) if remaining > 0 else None
            if popped is None:
                raise Timeout(f"The request did not finish within {self._timeout:g} seconds "
                              f"(EMBED_SYNC_TIMEOUT); the workers may be overloaded.")
            result = ChunkResult.unpack(popped[1])
            by_chunk[result.chunk] = result
        return [by_chunk[i] for i in range(expected)]
