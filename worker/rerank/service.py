"""Run one chunk of a rerank request: tokenize the pairs, score them in shared batches, pack the reply."""

from __future__ import annotations

import numpy as np

from embedserve.protocol import ChunkResult, RerankChunk
from worker.batcher import Batcher
from worker.embedding_service import wait_rows
from worker.rerank.base import Reranker


class RerankService:
    """Glue between rerank tasks and the reranker: pairs in, one float32 score per document out."""

    # What the caller is told when scoring fails for a reason of the worker's own, in place of its internals.
    FAILURE = "the worker failed to score these documents"

    def __init__(self, reranker: Reranker, batcher: Batcher):
        self.reranker = reranker
        self.batcher = batcher

    def run(self, chunk: RerankChunk) -> ChunkResult:
        """Score one chunk; a refusal or failure is raised (worker/tasks.py replies with it)."""
        # Tokenized here, on the task thread, so the forward thread only runs the model.
        tokenized = self.reranker.tokenize(chunk.query, chunk.documents, offset=chunk.offset,
                                           instruction=chunk.instruction, truncate=chunk.truncate,
                                           direction=chunk.truncation_direction)
        sub = self.batcher.submit(tokenized.rows, priority=chunk.priority, deadline=chunk.deadline)
        scores = np.ascontiguousarray(wait_rows(sub, chunk.deadline, "reranking"), dtype="<f4").reshape(-1, 1)
        return ChunkResult(chunk=chunk.chunk, vectors=scores.tobytes(), rows=scores.shape[0], dim=1,
                           tokens=tokenized.tokens)
