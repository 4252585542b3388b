"""A job's data in the job store: chunk inputs, chunk outputs, and (once compacted) Parquet results.

Layout under the store's root (file:// directory or s3:// prefix):

    jobs/<job id>/inputs/<chunk, 8 digits>.msgpack   one ChunkSpec per chunk, written at submit
    jobs/<job id>/parts/<chunk, 8 digits>.msgpack    one ChunkOutput per finished chunk
    jobs/<job id>/prefailed.msgpack                  batch lines refused before running
    jobs/<job id>/result/part-NNNNN.parquet          a finished native job, compacted by a worker
    jobs/<job id>/result/manifest.json               written last: the result is complete

A part is named by (job, chunk) and written whole (`Store.put` replaces atomically), so a chunk
run twice replaces its own part and never adds rows. Compaction reads the parts in chunk order,
writes the Parquet files and the manifest (embedserve/jobs/results.py), and only then are the
parts deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgpack

from embedserve.jobs.chunks import ChunkOutput, ChunkSpec
from embedserve.jobs.store import Store


def job_prefix(job_id: str) -> str:
    """Where one job's objects live."""
    return f"jobs/{job_id}/"


def input_key(job_id: str, chunk: int) -> str:
    return f"{job_prefix(job_id)}inputs/{chunk:08d}.msgpack"


def part_key(job_id: str, chunk: int) -> str:
    return f"{job_prefix(job_id)}parts/{chunk:08d}.msgpack"


def prefailed_key(job_id: str) -> str:
    return f"{job_prefix(job_id)}prefailed.msgpack"


class JobData:
    """Reads and writes one store's job objects."""

    def __init__(self, store: Store):
        self.store = store

    def put_inputs(self, job_id: str, specs: Iterable[ChunkSpec]) -> int:
        """Write every chunk's inputs; returns how many chunks. On any error, what was written is removed."""
        count = 0
        try:
            for count, spec in enumerate(specs, start=1):
                self.store.put(input_key(job_id, count - 1), spec.pack())
        except BaseException:
            self.delete(job_id)
            raise
        return count

    def spec(self, job_id: str, chunk: int) -> ChunkSpec | None:
        raw = self.store.get(input_key(job_id, chunk))
        return ChunkSpec.unpack(raw) if raw is not None else None

    def put_output(self, job_id: str, chunk: int, output: ChunkOutput) -> None:
        self.store.put(part_key(job_id, chunk), output.pack())

    def output(self, job_id: str, chunk: int) -> ChunkOutput | None:
        """One chunk's output, or None when it never ran (cancelled or expired first)."""
        raw = self.store.get(part_key(job_id, chunk))
        return ChunkOutput.unpack(raw) if raw is not None else None

    def outputs(self, job_id: str, chunks: int) -> Iterator[tuple[int, ChunkOutput | None]]:
        """(chunk, output or None) in chunk order, one in memory at a time."""
        for chunk in range(chunks):
            yield chunk, self.output(job_id, chunk)

    def put_prefailed(self, job_id: str, lines: list) -> None:
        self.store.put(prefailed_key(job_id), msgpack.packb(lines, use_bin_type=True))

    def prefailed(self, job_id: str) -> list:
        raw = self.store.get(prefailed_key(job_id))
        return msgpack.unpackb(raw, raw=False) if raw is not None else []

    def drop_parts(self, job_id: str) -> None:
        """Delete the per-chunk parts and inputs of a compacted job (its result files stay)."""
        self.store.delete_prefix(f"{job_prefix(job_id)}parts/")
        self.store.delete_prefix(f"{job_prefix(job_id)}inputs/")

    def delete(self, job_id: str) -> None:
        """Delete everything of a job."""
        self.store.delete_prefix(job_prefix(job_id))
