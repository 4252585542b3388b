"""Run one chunk of a bulk job: read its inputs from Redis, embed them through the same service
as sync requests (at bulk priority), write the output under (job, chunk), count it once.

A chunk is safe to run twice: its output key is overwritten and the job store counts a chunk
only the first time it finishes. Attempts are counted when a chunk starts, so a chunk whose
worker died (SIGKILL, OOM-kill) and was redelivered by the broker still counts against
EMBED_MAX_ATTEMPTS; past that, its items are marked failed and the job still ends.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from embedserve.errors import InternalError
from embedserve.jobs import ChunkOutput, ChunkSpec, JobStatus, JobStore
from embedserve.protocol import ChunkResult, EmbedChunk
from worker.service import EmbeddingService

log = logging.getLogger(__name__)

BULK_PRIORITY = 1


class TransientChunkError(Exception):
    """The chunk failed for a reason a later attempt may not hit (timeout, internal error)."""


class ChunkRunner:
    """Everything a job-chunk task needs; `requeue` sends the chunk to the bulk queue again."""

    def __init__(self, store: JobStore, service: EmbeddingService, *, max_attempts: int, time_limit: float,
                 requeue: Callable[[str, int, str], None]):
        self.store = store
        self.service = service
        self.max_attempts = max_attempts
        self.time_limit = time_limit
        self.requeue = requeue

    def run(self, job_id: str, index: int) -> None:
        """Process chunk `index` of `job_id`, whatever state the job is in."""
        status, attempt, done = self.store.start_chunk(job_id, index)
        if status == "gone" or done:
            return  # deleted or expired job, or a redelivery of a chunk that already finished
        job = self.store.get(job_id)
        spec = self.store.spec(job_id, index)
        if job is None or spec is None:
            return
        if status == JobStatus.CANCELLING.value:
            self.store.finish_chunk(job_id, index, None)
            return
        if job.expires_at and time.time() > job.expires_at and not job.status.finished:
            self.store.finish_chunk(job_id, index, None, skipped=True)
            return
        if attempt > self.max_attempts:
            log.warning("job %s chunk %d: attempt %d is over the limit; failing its items", job_id, index, attempt)
            self.store.finish_chunk(job_id, index, failed_output(spec, attempt - 1))
            return
        try:
            output = self.embed(spec)
        except TransientChunkError as exc:
            log.warning("job %s chunk %d attempt %d failed (%s); sending it again", job_id, index, attempt, exc)
            self.requeue(job_id, index, spec.model)
            return
        self.store.finish_chunk(job_id, index, output)

    def embed(self, spec: ChunkSpec) -> ChunkOutput:
        """Embed a chunk; a chunk that the model refuses (400) is split so only the bad items fail."""
        # Error messages name inputs by index: a native job's own index; within a batch line, the line's.
        native = spec.meta is None
        result = self._call(spec, spec.inputs, offset=spec.items[0] if native else 0)
        if result.error is None:
            return _output(spec.items, spec.counts, [result])
        if result.status != 400:
            raise TransientChunkError(result.error.get("message", "error"))
        if len(spec.items) == 1:
            return _output(spec.items, spec.counts, [result])
        # One item is bad (too long, token id out of range): run each alone to find which.
        results, start = [], 0
        for item, count in zip(spec.items, spec.counts):
            one = self._call(spec, spec.inputs[start:start + count], offset=item if native else 0)
            if one.error is not None and one.status != 400:
                raise TransientChunkError(one.error.get("message", "error"))
            results.append(one)
            start += count
        return _output(spec.items, spec.counts, results, per_item=True)

    def _call(self, spec: ChunkSpec, inputs: list, offset: int) -> ChunkResult:
        params = spec.params
        chunk = EmbedChunk(request_id="job", reply_to="", chunk=0, offset=offset, inputs=inputs,
                           deadline=time.time() + self.time_limit, input_type=params.get("input_type", "document"),
                           instruction=params.get("instruction"), truncate=bool(params.get("truncate")),
                           dimensions=params.get("dimensions"), priority=BULK_PRIORITY)
        return self.service.run(chunk)


def _output(items: list[int], item_counts: list[int], results: list[ChunkResult], *,
            per_item: bool = False) -> ChunkOutput:
    """Assemble a ChunkOutput: one result for the whole chunk, or (per_item) one per item."""
    dim = next((r.dim for r in results if r.error is None and r.dim), 0)
    rows, tokens, errors, parts = [], [], [], []
    if not per_item:
        result = results[0]
        if result.error is not None:  # a single-item chunk the model refused
            return ChunkOutput(items=items, rows=[0], tokens=[0], dim=0, vectors=b"",
                               errors=[{"status": result.status, "error": result.error}])
        row_tokens = result.row_tokens or [0] * result.rows
        start = 0
        for count in item_counts:
            rows.append(count)
            tokens.append(sum(row_tokens[start:start + count]))
            errors.append(None)
            start += count
        return ChunkOutput(items=items, rows=rows, tokens=tokens, dim=dim, vectors=result.vectors, errors=errors)
    for count, result in zip(item_counts, results):
        if result.error is not None:
            rows.append(0)
            tokens.append(0)
            errors.append({"status": result.status, "error": result.error})
        else:
            rows.append(count)
            tokens.append(result.tokens)
            errors.append(None)
            parts.append(result.vectors)
    return ChunkOutput(items=items, rows=rows, tokens=tokens, dim=dim, vectors=b"".join(parts), errors=errors)


def failed_output(spec: ChunkSpec, attempts: int) -> ChunkOutput:
    """Every item of a chunk failed: it used up its attempts."""
    error = InternalError(f"This input's chunk failed or stopped its worker {attempts} times "
                          f"(EMBED_MAX_ATTEMPTS); it was given up.", code="max_attempts_exceeded")
    payload = {"status": error.status, "error": error.to_payload()}
    n = len(spec.items)
    return ChunkOutput(items=spec.items, rows=[0] * n, tokens=[0] * n, dim=0, vectors=b"", errors=[payload] * n)

