"""Run one claimed chunk of a bulk job: read its inputs from the job store, embed them through the
same service as sync requests (at bulk priority), write the output part, count it once.

A chunk is safe to run twice: its part is replaced whole and the job scripts count a chunk only
the first time it finishes. Attempts are counted when a chunk is claimed, so a chunk whose worker
died (SIGKILL, OOM-kill) and was handed back still counts against EMBED_MAX_ATTEMPTS; past that,
its items are marked failed and the job still ends. The compaction step of a finished native job
is claimed and run here too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from embedserve.jobs import results as result_files
from embedserve.errors import InternalError
from embedserve.jobs.data import JobData, job_prefix, part_key
from embedserve.jobs.records import JobRecords, JobStatus
from embedserve.jobs.chunks import ChunkOutput, ChunkSpec
from embedserve.protocol import ChunkResult, EmbedChunk
from embedserve.jobs.scheduler import Claim, Scheduler
from embedserve.vector_types import FLOAT
from worker.embedding_service import EmbeddingService

log = logging.getLogger(__name__)

BULK_PRIORITY = 1


class TransientChunkError(Exception):
    """The chunk failed for a reason a later attempt may not hit (timeout, internal error)."""


class ChunkRunner:
    """Everything a bulk slot needs to run the chunks it claims, for one worker."""

    def __init__(self, records: JobRecords, scheduler: Scheduler, data: JobData, service: EmbeddingService, *,
                 worker_id: str, max_attempts: int, time_limit: float):
        self.records = records
        self.scheduler = scheduler
        self.data = data
        self.service = service
        self.worker_id = worker_id
        self.max_attempts = max_attempts
        self.time_limit = time_limit

    def run(self, claim: Claim) -> None:
        """Process one claimed chunk, whatever state its job is in; the claim is released at the end."""
        if claim.is_compaction:
            self.compact(claim.job_id)
            return
        index = int(claim.chunk)
        job = self.records.get(claim.job_id)
        spec = self.data.spec(claim.job_id, index) if job is not None else None
        if job is None or spec is None or job.stop_as or job.status == JobStatus.CANCELLING:
            self._finish(claim, None)  # deleted, cancelled or expired meanwhile: nothing to run
            return
        if claim.attempt > self.max_attempts:
            log.warning("job %s chunk %d: attempt %d is over the limit; failing its items", claim.job_id, index,
                        claim.attempt)
            self._finish(claim, failed_output(spec, claim.attempt - 1))
            return
        try:
            output = self.embed(spec, f"{claim.job_id}|{claim.chunk}")
        except TransientChunkError as exc:
            log.warning("job %s chunk %d attempt %d failed (%s); handing it back", claim.job_id, index, claim.attempt,
                        exc)
            self.scheduler.hand_back(claim, self.worker_id, refund=False)
            return
        output.ids = spec.ids
        self._finish(claim, output)

    def _finish(self, claim: Claim, output: ChunkOutput | None) -> None:
        """Write the chunk's part (replacing any earlier run's), then count it once."""
        if output is not None:
            self.data.put_output(claim.job_id, int(claim.chunk), output)
        if output is None:
            outcome = self.scheduler.finish(claim, self.worker_id, completed=0, failed=0, tokens=0, dim=0, errors=[])
        else:
            errors = [{"index": item, **err["error"]} for item, err in zip(output.items, output.errors)
                      if err is not None][: self.records.sample_size]
            outcome = self.scheduler.finish(claim, self.worker_id, completed=output.completed, failed=output.failed,
                                            tokens=sum(output.tokens), dim=output.dim, errors=errors)
        if outcome == "compact":  # this was the job's last chunk: its results become Parquet files now
            self.compact(claim.job_id)
        elif outcome == "gone" and output is not None:  # deleted while this chunk ran: leave no part behind
            self.data.store.delete(part_key(claim.job_id, int(claim.chunk)))

    def compact(self, job_id: str) -> None:
        """Turn a finished native job's parts into Parquet files + manifest, then end the job."""
        job = self.records.get(job_id)
        if job is None:
            self.scheduler.finalize(job_id, self.worker_id)
            return
        started = time.monotonic()
        outputs = (output if output is not None else unrun_output(self.data, job_id, chunk)
                   for chunk, output in self.data.outputs(job_id, job.chunks))
        manifest = result_files.write_result(self.data.store, job_prefix(job_id), outputs,
                                             embedding_type=job.embedding_type)
        status = self.scheduler.finalize(job_id, self.worker_id)
        if status == "lost":  # reaped while compacting: the step's new holder ends the job and drops the parts
            log.warning("job %s: compaction was handed to another worker meanwhile; leaving the parts", job_id)
            return
        self.data.drop_parts(job_id)
        log.info("job %s %s: %d rows compacted into %d files in %.1f s", job_id, status, manifest["rows"],
                 len(manifest["files"]), time.monotonic() - started)

    def embed(self, spec: ChunkSpec, tag: str = "job") -> ChunkOutput:
        """Embed a chunk; a chunk that the model refuses (400) is split so only the bad items fail."""
        if spec.bad:
            return self._embed_with_bad(spec, tag)
        # Error messages name inputs by index: a native job's own index; within a batch line, the line's.
        native = spec.meta is None
        result = self._call(spec, spec.inputs, spec.items[0] if native else 0, tag)
        if result.error is None:
            return _output(spec.items, spec.counts, [result], _type(spec))
        if result.status != 400:
            raise TransientChunkError(result.error.get("message", "error"))
        if len(spec.items) == 1:
            return _output(spec.items, spec.counts, [result], _type(spec))
        # One item is bad (too long, token id out of range): run each alone to find which.
        results, start = [], 0
        for item, count in zip(spec.items, spec.counts):
            one = self._call(spec, spec.inputs[start:start + count], item if native else 0, tag)
            if one.error is not None and one.status != 400:
                raise TransientChunkError(one.error.get("message", "error"))
            results.append(one)
            start += count
        return _output(spec.items, spec.counts, results, _type(spec), per_item=True)

    def _embed_with_bad(self, spec: ChunkSpec, tag: str) -> ChunkOutput:
        """Embed the good items of a chunk, then put its pre-failed items back in item order."""
        bad = {int(k): v for k, v in spec.bad.items()}
        good = [(item, count) for item, count in zip(spec.items, spec.counts) if item not in bad]
        inner = None
        if good:
            inner = self.embed(replace(spec, items=[i for i, _ in good], counts=[c for _, c in good], bad=None,
                                       ids=None), tag)
        done = {item: n for n, item in enumerate(inner.items)} if inner else {}
        rows, tokens, errors = [], [], []
        for item in spec.items:
            if item in bad:
                rows.append(0)
                tokens.append(0)
                errors.append(bad[item])
            else:
                n = done[item]
                rows.append(inner.rows[n])
                tokens.append(inner.tokens[n])
                errors.append(inner.errors[n])
        # Failed items have no rows, so the good items' vectors stay in item order as they are.
        return ChunkOutput(items=spec.items, rows=rows, tokens=tokens, dim=inner.dim if inner else 0,
                           vectors=inner.vectors if inner else b"", errors=errors, embedding_type=_type(spec))

    def _call(self, spec: ChunkSpec, inputs: list, offset: int, tag: str) -> ChunkResult:
        params = spec.params
        # The request id names the chunk ("job|chunk", as held): a hung pass's chunks are told by it.
        chunk = EmbedChunk(request_id=tag, reply_to="", chunk=0, offset=offset, inputs=inputs,
                           deadline=time.time() + self.time_limit, input_type=params.get("input_type", "document"),
                           instruction=params.get("instruction"), truncate=bool(params.get("truncate")),
                           dimensions=params.get("dimensions"), priority=BULK_PRIORITY,
                           embedding_types=[_type(spec)],
                           truncation_direction=params.get("truncation_direction", "right"))
        return self.service.run(chunk)


def _type(spec: ChunkSpec) -> str:
    """The vector type a chunk's job asked for; the job store keeps that form."""
    return spec.params.get("embedding_type") or FLOAT


def _output(items: list[int], item_counts: list[int], results: list[ChunkResult], embedding_type: str, *,
            per_item: bool = False) -> ChunkOutput:
    """Assemble a ChunkOutput: one result for the whole chunk, or (per_item) one per item."""
    dim = next((r.dim for r in results if r.error is None and r.dim), 0)
    rows, tokens, errors, parts = [], [], [], []
    if not per_item:
        result = results[0]
        if result.error is not None:  # a single-item chunk the model refused
            return ChunkOutput(items=items, rows=[0], tokens=[0], dim=0, vectors=b"",
                               errors=[{"status": result.status, "error": result.error}],
                               embedding_type=embedding_type)
        row_tokens = result.row_tokens or [0] * result.rows
        start = 0
        for count in item_counts:
            rows.append(count)
            tokens.append(sum(row_tokens[start:start + count]))
            errors.append(None)
            start += count
        return ChunkOutput(items=items, rows=rows, tokens=tokens, dim=dim, vectors=result.data(embedding_type),
                           errors=errors, embedding_type=embedding_type)
    for count, result in zip(item_counts, results):
        if result.error is not None:
            rows.append(0)
            tokens.append(0)
            errors.append({"status": result.status, "error": result.error})
        else:
            rows.append(count)
            tokens.append(result.tokens)
            errors.append(None)
            parts.append(result.data(embedding_type))
    return ChunkOutput(items=items, rows=rows, tokens=tokens, dim=dim, vectors=b"".join(parts), errors=errors,
                       embedding_type=embedding_type)


def failed_output(spec: ChunkSpec, attempts: int) -> ChunkOutput:
    """Every item of a chunk failed: it used up its attempts."""
    error = InternalError(f"This input's chunk failed or stopped its worker {attempts} times "
                          f"(EMBED_MAX_ATTEMPTS); it was given up.", code="max_attempts_exceeded")
    return _all_failed(spec, error)


def unrun_output(data: JobData, job_id: str, chunk: int) -> ChunkOutput:
    """The output of a chunk that never ran (a handed-back chunk whose job stopped): every item failed."""
    spec = data.spec(job_id, chunk)
    error = InternalError("This input was not processed.", code="not_processed")
    return _all_failed(spec, error) if spec is not None else ChunkOutput([], [], [], 0, b"", [])


def _all_failed(spec: ChunkSpec, error: InternalError) -> ChunkOutput:
    payload = {"status": error.status, "error": error.to_payload()}
    n = len(spec.items)
    return ChunkOutput(items=spec.items, rows=[0] * n, tokens=[0] * n, dim=0, vectors=b"", errors=[payload] * n,
                       ids=spec.ids, embedding_type=_type(spec))

