"""Compaction: a finished native job's chunk parts become its Parquet result, then the job ends.

The worker that counts a job's last chunk compacts it at once; a compaction step handed back (its
worker died or drained) is claimed like a chunk ("job|c", embedserve/jobs/scripts.py) and run by
whichever worker claims it. Parts are read in chunk order, the Parquet files and manifest written
(embedserve/jobs/results.py), the job finalized, and only then are the parts deleted: a step
whose worker died before the end is handed back and run again from the same parts.

A native job's chunks hold runs of consecutive indices, in order. An index no chunk holds is one
whose chunk's inputs were gone from the store when it ran (the runner counts nothing for it): it
gets a failed row, `input_lost`, and the job's failed count includes it, so a result always has
every index from 0 to total - 1 and its counts add up.

An input that repeats an earlier chunk's gets that input's row here (embedserve/jobs/repeats.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from embedserve.errors import InternalError
from embedserve.jobs import results as result_files
from embedserve.jobs.chunks import ChunkOutput
from embedserve.jobs.data import JobData, job_prefix
from embedserve.jobs.records import JobRecords
from embedserve.jobs.repeats import RepeatFiller
from embedserve.jobs.scheduler import Scheduler

log = logging.getLogger(__name__)


class Compactor:
    """Compacts the jobs a worker (`worker_id`) holds the compaction step of."""

    def __init__(self, records: JobRecords, scheduler: Scheduler, data: JobData, worker_id: str):
        self.records = records
        self.scheduler = scheduler
        self.data = data
        self.worker_id = worker_id

    def compact(self, job_id: str) -> None:
        """Turn a finished native job's parts into Parquet files + manifest, then end the job."""
        job = self.records.get(job_id)
        if job is None:  # deleted meanwhile: release the step, leave nothing behind
            self.scheduler.finalize(job_id, self.worker_id)
            self.data.delete(job_id)
            return
        started = time.monotonic()

        def part(chunk: int) -> ChunkOutput:
            output = self.data.output(job_id, chunk)
            return output if output is not None else unrun_output(self.data, job_id, chunk)

        outputs = ((chunk, output if output is not None else unrun_output(self.data, job_id, chunk))
                   for chunk, output in self.data.outputs(job_id, job.chunks))
        gaps, repeats, tally = Gaps(job.total), RepeatFiller(part), Tally()
        manifest = result_files.write_result(self.data.store, job_prefix(job_id),
                                             tally.counted(gaps.filled(repeats.filled(outputs))),
                                             embedding_type=job.embedding_type, windows=job.long_input == "windows")
        counts = {"cached": tally.cached} if tally.cached else {}
        if repeats.failed:  # stopped or not, `completed` is the vectors the result holds
            counts["completed"] = tally.completed
            if job.stop_as:  # the repeats it no longer counts as completed failed (a second compaction adds 0)
                counts["failed"] = job.failed + max(0, job.completed - tally.completed)
        if (gaps.lost or repeats.failed) and not job.stop_as:
            # Absolute, from the results as written: a second compaction of the job sets the same.
            counts.update(completed=tally.completed, failed=tally.failed)
            if gaps.lost:
                log.error("job %s: %d inputs were missing from the job store; their rows failed (input_lost)",
                          job_id, gaps.lost)
            if repeats.failed:
                log.error("job %s: %d inputs repeat ones that failed; they failed too", job_id, repeats.failed)
        if counts:
            self.records.set_counts(job_id, **counts)
        status = self.scheduler.finalize(job_id, self.worker_id)
        if status == "lost":  # reaped while compacting: the step's new holder ends the job and drops the parts
            log.warning("job %s: compaction was handed to another worker meanwhile; leaving the parts", job_id)
            return
        if status in ("gone", "expired"):
            # Deleted, or its data swept, while this ran: the files just written must not outlive the job.
            self.data.delete(job_id)
            return
        self.data.drop_parts(job_id)
        log.info("job %s %s: %d rows compacted into %d files in %.1f s", job_id, status, manifest["rows"],
                 len(manifest["files"]), time.monotonic() - started)


def unrun_output(data: JobData, job_id: str, chunk: int) -> ChunkOutput:
    """The output of a chunk that never ran (a handed-back chunk whose job stopped): every item failed."""
    spec = data.spec(job_id, chunk)
    error = InternalError("This input was not processed.", code="not_processed")
    return spec.all_failed(error) if spec is not None else ChunkOutput([], [], [], 0, b"", [])


class Tally:
    """Adds up a job's results as they pass: items completed and failed, inputs from the embedding cache."""

    def __init__(self):
        self.completed = self.failed = self.cached = 0

    def counted(self, outputs: Iterable[ChunkOutput]) -> Iterator[ChunkOutput]:
        for output in outputs:
            self.completed += output.completed
            self.failed += output.failed
            self.cached += output.cached
            yield output


class Gaps:
    """Fills the indices that no output holds, below `total`, with failed rows; counts them in `lost`."""

    def __init__(self, total: int):
        self.total = total
        self.lost = 0

    def filled(self, outputs: Iterable[ChunkOutput]) -> Iterator[ChunkOutput]:
        expected = 0
        for output in outputs:
            if output.items:
                if output.items[0] > expected:
                    yield self._lost(expected, output.items[0])
                expected = output.items[-1] + 1
            yield output
        if expected < self.total:
            yield self._lost(expected, self.total)

    def _lost(self, start: int, end: int) -> ChunkOutput:
        self.lost += end - start
        error = {"status": 500, "error": InternalError(
            "This input was missing from the job store when its chunk ran; it was not embedded.",
            code="input_lost").to_payload()}
        n = end - start
        return ChunkOutput(items=list(range(start, end)), rows=[0] * n, tokens=[0] * n, dim=0, vectors=b"",
                           errors=[error] * n)
