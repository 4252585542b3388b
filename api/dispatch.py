"""Send a validated request to its model's workers through Celery and collect the replies.

Large requests are cut into chunks so all live workers (and all their task threads) share
the work; each chunk's result is pushed by the worker to one reply list that this request
BLPOPs, so the wait is one blocking call per chunk and no polling.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

import redis
from celery import Celery

from embedserve import defaults, keys
from embedserve.errors import ServiceError, Timeout, Unavailable
from embedserve.protocol import EMBED_TASK, ChunkResult, EmbedChunk, interactive_queue
from embedserve.registry import ServedModel

from api.validation import EmbeddingRequest

# Seconds a client is told to wait when no worker serves the model.
NO_WORKER_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Embedded:
    """The ordered chunk results of one request."""

    chunks: list[ChunkResult]
    tokens: int


def chunk_bounds(total: int, workers: int) -> list[tuple[int, int]]:
    """(start, end) slices: about one chunk per worker, within MIN/MAX_SYNC_CHUNK inputs each."""
    size = math.ceil(total / max(1, workers))
    size = max(defaults.MIN_SYNC_CHUNK, min(defaults.MAX_SYNC_CHUNK, size))
    return [(start, min(total, start + size)) for start in range(0, total, size)]


class Dispatcher:
    """Sends chunks to a model's interactive queue and waits for them, bounded by a timeout."""

    def __init__(self, celery: Celery, client: redis.Redis, timeout: float):
        self._celery = celery
        self._redis = client
        self._timeout = timeout

    def embed(self, req: EmbeddingRequest, served: ServedModel) -> Embedded:
        """Embed every input of `req` with `served`; raises ServiceError on any failure."""
        if served.live_workers == 0:
            raise Unavailable(f"No worker is serving model '{served.card.name}' right now; retry shortly.",
                              code="no_worker", retry_after=NO_WORKER_RETRY_AFTER_S)
        request_id = uuid.uuid4().hex
        reply_key = keys.reply(request_id)
        deadline = time.time() + self._timeout
        bounds = chunk_bounds(len(req.inputs), served.live_workers)
        queue = interactive_queue(served.card.name)
        for index, (start, end) in enumerate(bounds):
            chunk = EmbedChunk(
                request_id=request_id, reply_to=reply_key, chunk=index, offset=start,
                inputs=req.inputs[start:end], deadline=deadline, input_type=req.input_type,
                instruction=req.instruction, truncate=req.truncate, dimensions=req.dimensions)
            self._celery.send_task(EMBED_TASK, args=[chunk.to_wire()], queue=queue,
                                   expires=self._timeout, task_id=f"{request_id}-{index}")
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
                raise Timeout(f"The embedding did not finish within {self._timeout:g} seconds "
                              f"(EMBED_SYNC_TIMEOUT); the workers may be overloaded.")
            result = ChunkResult.unpack(popped[1])
            by_chunk[result.chunk] = result
        return [by_chunk[i] for i in range(expected)]
