"""Run one claimed chunk of a bulk job: read its inputs from the job store, embed them through the
same service as sync requests (at bulk priority), write the output part, count it once.

A chunk is safe to run twice: its part is replaced whole and the job scripts count a chunk only
the first time it finishes. Attempts are counted when a chunk is claimed, so a chunk whose worker
died (SIGKILL, OOM-kill) and was handed back still counts against EMBED_MAX_ATTEMPTS; past that,
its items are marked failed and the job still ends. Counting a native job's last chunk hands this
worker the job's compaction step, which the slot then runs (embedserve/jobs/compaction.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from embedserve.cache_scope import scope_of
from embedserve.errors import InternalError, ServiceError
from embedserve.fleet.stage_times import BULK, StageTimes
from embedserve.jobs.chunks import ChunkOutput, ChunkSpec
from embedserve.jobs.data import JobData, part_key
from embedserve.jobs.records import JobRecords, JobStatus
from embedserve.jobs.scheduler import Claim, Scheduler
from embedserve.protocol import ChunkResult
from worker.embedding_service import EmbeddingService

log = logging.getLogger(__name__)

BULK_PRIORITY = 1


class TransientChunkError(Exception):
    """The chunk failed for a reason a later attempt may not hit (timeout, internal error)."""


class ChunkRunner:
    """Everything a bulk slot needs to run the chunks it claims, for one worker."""

    def __init__(self, records: JobRecords, scheduler: Scheduler, data: JobData, service: EmbeddingService, *,
                 worker_id: str, max_attempts: int, time_limit: float, stages: StageTimes | None = None):
        self.records = records
        self.scheduler = scheduler
        self.data = data
        self.service = service
        self.worker_id = worker_id
        self.max_attempts = max_attempts
        self.time_limit = time_limit
        # Where each stage's seconds go (the bulk path's account in /metrics); a private one when none is given.
        self.stages = stages or StageTimes()

    def run(self, claim: Claim) -> bool:
        """Process one claimed chunk, whatever state its job is in; the claim is released at the end.

        True when it was its job's last chunk: this worker now holds the job's compaction step.
        """
        index = int(claim.chunk)
        with self.stages.timed(BULK, "read"):
            job = self.records.get(claim.job_id)
            spec = self.data.spec(claim.job_id, index) if job is not None else None
        if job is None or spec is None or job.stop_as or job.status == JobStatus.CANCELLING:
            if job is not None and spec is None and not job.stop_as:
                # Lost from the store under a live job: counted as nothing here, its rows fail at compaction.
                log.error("job %s chunk %d: its inputs are missing from the job store", claim.job_id, index)
            return self._finish(claim, None)  # deleted, cancelled or expired meanwhile: nothing to run
        if spec.repeats:
            with self.stages.timed(BULK, "read"):
                spec.repeats = self._skippable(claim.job_id, spec)
        if claim.attempt > self.max_attempts:
            log.warning("job %s chunk %d: attempt %d is over the limit; failing its items", claim.job_id, index,
                        claim.attempt)
            return self._finish(claim, failed_output(spec, claim.attempt - 1))
        try:
            output = self.embed(spec, f"{claim.job_id}|{claim.chunk}", scope_of(job.owner))
        except TransientChunkError as exc:
            log.warning("job %s chunk %d attempt %d failed (%s); handing it back", claim.job_id, index, claim.attempt,
                        exc)
            self.scheduler.hand_back(claim, self.worker_id, refund=False)
            return False
        output.ids = spec.ids
        self.stages.items(BULK, len(spec.inputs))
        return self._finish(claim, output)

    def _skippable(self, job_id: str, spec: ChunkSpec) -> dict | None:
        """The repeats whose forward this run skips: those whose first occurrence's chunk has finished. The
        others are embedded here, so that a job stopped before their first occurrence ran still holds a vector
        for each row it counted (embedserve/jobs/repeats.py)."""
        if spec.repeat_chunks is None:  # a spec from an API before repeat_chunks: every repeat skipped, as then
            return spec.repeats
        finished = self.scheduler.finished_chunks(job_id, spec.repeat_chunks.values())
        return {item: first for item, first in spec.repeats.items()
                if spec.repeat_chunks.get(item) in finished} or None

    def _finish(self, claim: Claim, output: ChunkOutput | None) -> bool:
        """Write the chunk's part (replacing any earlier run's), then count it once; True when it was the last."""
        if output is not None:
            with self.stages.timed(BULK, "write"):
                self.data.put_output(claim.job_id, int(claim.chunk), output)
        with self.stages.timed(BULK, "finish"):
            if output is None:
                outcome = self.scheduler.finish(claim, self.worker_id, completed=0, failed=0, tokens=0, dim=0,
                                                errors=[])
            else:
                errors = [{"index": item, **err["error"]} for item, err in zip(output.items, output.errors)
                          if err is not None][: self.records.sample_size]
                outcome = self.scheduler.finish(claim, self.worker_id, completed=output.completed,
                                                failed=output.failed, tokens=sum(output.tokens), dim=output.dim,
                                                errors=errors)
        if (outcome == "gone" or outcome.startswith("late:")) and output is not None:
            # Deleted, or ended (cancelled, expired: its data maybe swept already) before this chunk was
            # counted: the part is no result, so leave none behind.
            self.data.store.delete(part_key(claim.job_id, int(claim.chunk)))
        # "compact": this was the job's last chunk; its results become Parquet files now.
        return outcome == "compact"

    def embed(self, spec: ChunkSpec, tag: str = "job", scope: str = "") -> ChunkOutput:
        """Embed a chunk; a chunk that the model refuses (400) is split so only the bad items fail.

        `scope` names the job owner's embedding-cache entries (embedserve/cache_scope.py). Items that
        repeat an earlier chunk's (spec.repeats) are tokenized, not embedded: compaction fills their rows.
        """
        if spec.bad:
            return self._embed_with_bad(spec, tag, scope)
        kind = spec.params.embedding_type
        # Error messages name inputs by index: a native job's own index; within a batch line, the line's.
        native = spec.meta is None
        repeated = _repeated_positions(spec)
        try:
            whole = self._call(spec, spec.inputs, spec.items[0] if native else 0, tag, scope, repeated)
        except ServiceError as refused:
            if len(spec.items) == 1:
                return _output(spec.items, spec.counts, [refused], kind)
        else:
            return _with_repeats(_output(spec.items, spec.counts, [whole], kind), spec)
        # One item is bad (too long, token id out of range): run each alone to find which.
        results, start = [], 0
        for item, count in zip(spec.items, spec.counts):
            alone = frozenset(p - start for p in repeated if start <= p < start + count)
            try:
                results.append(self._call(spec, spec.inputs[start:start + count], item if native else 0, tag, scope,
                                          alone))
            except ServiceError as refused:
                results.append(refused)
            start += count
        return _with_repeats(_output(spec.items, spec.counts, results, kind, per_item=True), spec)

    def _embed_with_bad(self, spec: ChunkSpec, tag: str, scope: str) -> ChunkOutput:
        """Embed the good items of a chunk, then put its pre-failed items back in item order."""
        bad = {int(k): v for k, v in spec.bad.items()}
        good = [(item, count) for item, count in zip(spec.items, spec.counts) if item not in bad]
        inner = None
        if good:
            inner = self.embed(replace(spec, items=[i for i, _ in good], counts=[c for _, c in good], bad=None,
                                       ids=None), tag, scope)
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
                           vectors=inner.vectors if inner else b"", errors=errors,
                           embedding_type=spec.params.embedding_type, windows=inner.windows if inner else None,
                           repeats=inner.repeats if inner else None, cached=inner.cached if inner else 0)

    def _call(self, spec: ChunkSpec, inputs: list, offset: int, tag: str, scope: str = "",
              repeated: frozenset[int] = frozenset()) -> ChunkResult:
        """Embed some of a chunk's inputs (not forwarding those at `repeated`). The model's refusal of them (a
        400 ServiceError) is raised as it is; any other failure as TransientChunkError."""
        try:
            # The tag names the chunk ("job|chunk", as held): a hung pass's chunks are told by it.
            return self.service.embed(inputs, spec.params, offset=offset, deadline=time.time() + self.time_limit,
                                      priority=BULK_PRIORITY, tag=tag,
                                      stage=lambda name, seconds: self.stages.record(BULK, name, seconds),
                                      scope=scope, placeholders=repeated)
        except ServiceError as exc:
            if exc.status == 400:
                raise
            raise TransientChunkError(exc.message) from exc
        except Exception as exc:  # noqa: BLE001 - a bug: its traceback is logged, the chunk is handed back
            log.exception("chunk %s failed", tag)
            raise TransientChunkError(self.service.FAILURE) from exc


def _output(items: list[int], item_counts: list[int], results: list[ChunkResult | ServiceError], embedding_type: str,
            *, per_item: bool = False) -> ChunkOutput:
    """Assemble a ChunkOutput: one result for the whole chunk, or (per_item) one per item; a refusal
    (ServiceError) in place of a result fails its items."""
    dim = next((r.dim for r in results if isinstance(r, ChunkResult) and r.dim), 0)
    rows, tokens, errors, parts = [], [], [], []
    if not per_item:
        result = results[0]
        if isinstance(result, ServiceError):  # a single-item chunk the model refused
            return ChunkOutput(items=items, rows=[0], tokens=[0], dim=0, vectors=b"", errors=[_item_error(result)],
                               embedding_type=embedding_type)
        row_tokens = result.row_tokens or [0] * result.rows
        start = 0
        for count in item_counts:
            rows.append(count)
            tokens.append(sum(row_tokens[start:start + count]))
            errors.append(None)
            start += count
        return ChunkOutput(items=items, rows=rows, tokens=tokens, dim=dim, vectors=result.data(embedding_type),
                           errors=errors, embedding_type=embedding_type, windows=_windows(result, embedding_type),
                           cached=result.cached or 0)
    windows = [] if any(isinstance(r, ChunkResult) and r.windows is not None for r in results) else None
    for count, result in zip(item_counts, results):
        if isinstance(result, ServiceError):
            rows.append(0)
            tokens.append(0)
            errors.append(_item_error(result))
        else:
            rows.append(count)
            tokens.append(result.tokens)
            errors.append(None)
            parts.append(result.data(embedding_type))
            if windows is not None:
                windows.extend(_windows(result, embedding_type) or [])
    return ChunkOutput(items=items, rows=rows, tokens=tokens, dim=dim, vectors=b"".join(parts), errors=errors,
                       embedding_type=embedding_type, windows=windows,
                       cached=sum(r.cached or 0 for r in results if isinstance(r, ChunkResult)))


def _repeated_positions(spec: ChunkSpec) -> frozenset[int]:
    """Positions in spec.inputs of the items that repeat an earlier chunk's (single-input items only)."""
    if not spec.repeats:
        return frozenset()
    positions, start = set(), 0
    for item, count in zip(spec.items, spec.counts):
        if count == 1 and str(item) in spec.repeats:
            positions.add(start)
        start += count
    return frozenset(positions)


def _with_repeats(output: ChunkOutput, spec: ChunkSpec) -> ChunkOutput:
    """`output`, naming the items whose rows are placeholders for compaction to fill: the repeats that succeeded."""
    if spec.repeats:
        ok = {str(item) for item, error in zip(output.items, output.errors) if error is None}
        output.repeats = {item: first for item, first in spec.repeats.items() if item in ok} or None
    return output


def _windows(result: ChunkResult, embedding_type: str) -> list | None:
    """A result's windows (`long_input: windows`) as a job's output keeps them: each vector in the job's type."""
    if result.windows is None:
        return None
    return [[{"text_start": w["text_start"], "text_end": w["text_end"], "tokens": w["tokens"],
              "embedding": w["vectors"][embedding_type]} for w in row] for row in result.windows]


def _item_error(refused: ServiceError) -> dict:
    """An item's error as its chunk's output holds it."""
    return {"status": refused.status, "error": refused.to_payload()}


def failed_output(spec: ChunkSpec, attempts: int) -> ChunkOutput:
    """Every item of a chunk failed: it used up its attempts."""
    error = InternalError(f"This input's chunk failed or stopped its worker {attempts} times "
                          f"(EMBED_MAX_ATTEMPTS); it was given up.", code="max_attempts_exceeded")
    return spec.all_failed(error)
