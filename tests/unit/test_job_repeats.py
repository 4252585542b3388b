"""A job's repeats (embedserve/jobs/repeats.py): marked across chunks at submission, filled at compaction."""

from __future__ import annotations

import struct

from embedserve.jobs.chunks import ChunkOutput, ChunkSpec
from embedserve.jobs.repeats import RepeatFiller, RepeatFinder


def row(value: float, dim: int = 2) -> bytes:
    return struct.pack(f"<{dim}f", *([value] * dim))


def test_only_repeats_of_an_earlier_chunk_are_marked():
    finder = RepeatFinder()
    assert finder.mark([0, 1, 2], [1, 1, 1], ["a", "b", "a"]) is None  # within a chunk: the worker's to dedupe
    assert finder.mark([3, 4, 5], [1, 0, 1], ["b", "c"]) == {"3": 1}  # item 4 is a refused line: no input
    assert finder.mark([6, 7], [1, 1], [[1, 2], "c"]) == {"7": 5}
    assert finder.mark([8], [1], [[1, 2]]) == {"8": 6}  # token ids too
    # Each repeat's first occurrence by chunk (chunks numbered as marked: 0, 1, 2, 3), for the worker to tell
    # whether it has run yet.
    assert finder.chunks_of({"3": 1, "7": 5, "8": 6}) == {"3": 0, "7": 1, "8": 2}
    assert finder.chunks_of(None) is None


def test_a_specs_repeat_chunks_read_back_and_are_left_out_when_none():
    marked = ChunkSpec(model="m", items=[3], counts=[1], inputs=["a"], repeats={"3": 0}, repeat_chunks={"3": 0})
    assert ChunkSpec.unpack(marked.pack()).repeat_chunks == {"3": 0}
    assert b"repeat_chunks" not in ChunkSpec(model="m", items=[3], counts=[1], inputs=["a"], repeats={"3": 0}).pack()


def test_a_spec_without_repeats_is_stored_as_before_and_reads_back():
    spec = ChunkSpec(model="m", items=[0], counts=[1], inputs=["a"])
    assert b"repeats" not in spec.pack()
    marked = ChunkSpec(model="m", items=[3], counts=[1], inputs=["a"], repeats={"3": 0})
    assert ChunkSpec.unpack(marked.pack()).repeats == {"3": 0}
    output = ChunkOutput(items=[0], rows=[1], tokens=[2], dim=2, vectors=row(1), errors=[None])
    assert b"cached" not in output.pack() and ChunkOutput.unpack(output.pack()) == output


def test_placeholders_get_the_first_occurrence_row_from_an_earlier_part():
    first = ChunkOutput(items=[0, 1], rows=[1, 0], tokens=[3, 0], dim=2, vectors=row(1),
                        errors=[None, {"status": 400, "error": {"message": "too long"}}])
    second = ChunkOutput(items=[2, 3, 4], rows=[1, 1, 1], tokens=[3, 1, 3], dim=2, vectors=row(0) + row(5) + row(0),
                         errors=[None, None, None], repeats={"2": 0, "4": 1})
    parts = {0: first, 1: second}
    filler = RepeatFiller(parts.__getitem__)
    out = list(filler.filled(parts.items()))
    assert out[0] is first
    filled = out[1]
    # Item 2 gets item 0's row; item 4 repeats a failed input: it fails the same way, its row goes.
    assert filled.vectors == row(1) + row(5)
    assert filled.rows == [1, 1, 0] and filled.errors[2] == first.errors[1] and filler.failed == 1
    assert filled.tokens == [3, 1, 3]


def test_a_stopped_jobs_result_fills_or_fails_its_repeats(tmp_path):
    # A cancelled job is not compacted: its parts are served as they are, where a repeat's row is a
    # placeholder (zeros). They were served so, as vectors; now they get their first occurrence's row,
    # or its failure (not processed, when the first occurrence's chunk never ran).
    from api.bulk.result_formats import chunk_outputs
    from embedserve.jobs.data import JobData
    from embedserve.jobs.records import Job, JobStatus
    from embedserve.jobs.store.local import LocalStore

    data = JobData(LocalStore(tmp_path))
    specs = [ChunkSpec(model="m", items=[0, 1], counts=[1, 1], inputs=["a", "b"]),
             ChunkSpec(model="m", items=[2, 3], counts=[1, 1], inputs=["c", "d"]),
             ChunkSpec(model="m", items=[4, 5], counts=[1, 1], inputs=["a", "c"], repeats={"4": 0, "5": 2})]
    data.put_inputs("j", specs)
    data.put_output("j", 0, ChunkOutput(items=[0, 1], rows=[1, 1], tokens=[2, 2], dim=2, vectors=row(1) + row(2),
                                        errors=[None, None]))
    # chunk 1 never ran (the job was cancelled first); chunk 2 ran, its two repeats as placeholders
    data.put_output("j", 2, ChunkOutput(items=[4, 5], rows=[1, 1], tokens=[2, 2], dim=2, vectors=row(0) + row(0),
                                        errors=[None, None], repeats={"4": 0, "5": 2}))
    job = Job(id="j", owner="o", kind="job", model="m", status=JobStatus.CANCELLED, created_at=0, total=6, chunks=3,
              dim=2, stop_as="cancelled")
    out = list(chunk_outputs(data, job))
    last = out[2]
    assert last.rows == [1, 0] and last.vectors == row(1)  # item 4: item 0's row
    assert last.errors[0] is None and last.errors[1]["error"]["code"] == "cancelled"  # item 5: item 2 never ran
