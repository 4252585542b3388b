"""A job's repeated inputs: embedded once, whatever chunks they fall in, with or without the embedding cache.

At submission the API digests every input of a native job (`RepeatFinder`) and marks, in each
chunk's spec, the items whose input an earlier chunk already holds (ChunkSpec.repeats: item ->
its first occurrence). A repeat inside one chunk needs no mark: the worker forwards each distinct
row of a chunk once (worker/embedding_service.py). A marked item is tokenized by its worker, so
its tokens and any refusal (too long) are its own, and counted with its chunk as always, but not
forwarded: its row is a placeholder. Compaction (`RepeatFiller`) copies the first occurrence's row
into it, reading that earlier part again from the store when it is not the one at hand.

The first occurrence is always in an earlier chunk, so its part is there when compaction reaches
the repeat. Should it have failed (its chunk gave up, never ran, or its inputs were lost), the
repeat fails with the same error and the job's counts move one from completed to failed.

Chunks do not always run in order (a failover hands one back; slots run side by side). A worker
skips a repeat's forward only when the first occurrence's chunk (ChunkSpec.repeat_chunks) has
finished already; otherwise it embeds the repeat itself. A job stopped (cancelled, expired) is not
compacted, so otherwise a repeat whose first occurrence never ran would count as completed
while its result holds no vector for it.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from itertools import accumulate

from embedserve.errors import InternalError
from embedserve.jobs.chunks import ChunkOutput

# Earlier parts compaction keeps in memory while filling repeats (each read again from the store if evicted).
PARTS_KEPT = 8


class RepeatFinder:
    """Remembers each distinct input of one job by a 128-bit digest (not the input: a million-line file stays
    small) and the item it first came in."""

    def __init__(self, enabled: bool = True):
        self._first: dict[bytes, int] = {}
        self._enabled = enabled  # off: no item is ever marked
        self._starts: list[int] = []  # the first item of each chunk marked so far: chunk n starts at _starts[n]

    def mark(self, items: list[int], counts: list[int], inputs: list) -> dict | None:
        """The repeats of one chunk (items in order, `counts` inputs each, all of them in `inputs`): item (as
        a string) -> the earlier chunk's item it repeats; None when there are none. Items of several inputs
        (none in a native job) and items of none (refused lines) are never marked."""
        if not self._enabled:
            return None
        repeats = {}
        start = min(items) if items else (self._starts[-1] if self._starts else 0)
        self._starts.append(start)
        position = 0
        for item, count in zip(items, counts):
            if count == 1:
                first = self._first.setdefault(_digest(inputs[position]), item)
                if first < start:
                    repeats[str(item)] = first
            position += count
        return repeats or None

    def chunks_of(self, repeats: dict | None) -> dict | None:
        """The chunk (numbered in the order `mark` was called, one call a chunk) of each repeat's first
        occurrence: ChunkSpec.repeat_chunks for the repeats `mark` just gave."""
        if not repeats:
            return None
        return {item: bisect.bisect_right(self._starts, first) - 1 for item, first in repeats.items()}


def _digest(item) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(item, str):
        digest.update(b"t" + item.encode("utf-8", "surrogatepass"))
    else:
        digest.update(b"i" + ",".join(map(str, item)).encode())
    return digest.digest()


class RepeatFiller:
    """Fills the placeholder rows of repeats in a job's outputs, given in chunk order; counts in `failed` the
    repeats that failed because their first occurrence did."""

    def __init__(self, read_part):
        self._read_part = read_part  # chunk -> its ChunkOutput (an unrun chunk's all-failed one), from the store
        self._starts: list[int] = []  # the first item of each chunk passed, in order
        self._chunks: list[int] = []
        self._kept: OrderedDict[int, ChunkOutput] = OrderedDict()
        self.failed = 0

    def filled(self, outputs: Iterable[tuple[int, ChunkOutput]]) -> Iterator[ChunkOutput]:
        for chunk, output in outputs:
            if output.items:
                self._starts.append(output.items[0])
                self._chunks.append(chunk)
            yield self._fill(output) if output.repeats else output

    def _fill(self, output: ChunkOutput) -> ChunkOutput:
        width = output.row_width
        at = _Layout(output)
        rows, errors = list(output.rows), list(output.errors)
        replaced: dict[int, bytes] = {}
        for item_key, first in output.repeats.items():
            k = at.index_of(int(item_key))
            if k is None or errors[k] is not None or rows[k] != 1:
                continue  # refused on its own (too long, as its first was): nothing to fill
            row, error = self._row(output if at.index_of(first) is not None else self._holder(first), first)
            if row is None or len(row) != width:
                rows[k], errors[k] = 0, error or _lost_error()
                self.failed += 1
            else:
                replaced[k] = row
        parts = []
        for k in range(len(output.items)):
            if rows[k]:
                parts.append(replaced.get(k, output.vectors[at.start(k) * width:(at.start(k) + rows[k]) * width]))
        return ChunkOutput(items=output.items, rows=rows, tokens=output.tokens, dim=output.dim,
                           vectors=b"".join(parts), errors=errors, ids=output.ids,
                           embedding_type=output.embedding_type, windows=output.windows, cached=output.cached)

    def _holder(self, item: int) -> ChunkOutput | None:
        """The earlier part that holds `item` (read again from the store, a few kept), or None."""
        n = bisect.bisect_right(self._starts, item) - 1
        if n < 0:
            return None
        chunk = self._chunks[n]
        if chunk not in self._kept:
            self._kept[chunk] = self._read_part(chunk)
            if len(self._kept) > PARTS_KEPT:
                self._kept.popitem(last=False)
        self._kept.move_to_end(chunk)
        return self._kept[chunk]

    @staticmethod
    def _row(output: ChunkOutput | None, item: int) -> tuple[bytes | None, dict | None]:
        """The row of `item` in `output`, or None and the error it failed with."""
        at = _Layout(output) if output is not None else None
        k = at.index_of(item) if at is not None else None
        if k is None:
            return None, None
        if output.errors[k] is not None or output.rows[k] != 1:
            return None, output.errors[k]
        width = output.row_width
        return output.vectors[at.start(k) * width:(at.start(k) + 1) * width], None


class _Layout:
    """Where each item of an output is, and where its rows start."""

    def __init__(self, output: ChunkOutput):
        self._index = {item: k for k, item in enumerate(output.items)}
        self._starts = [0, *accumulate(output.rows)]

    def index_of(self, item: int) -> int | None:
        return self._index.get(item)

    def start(self, k: int) -> int:
        return self._starts[k]


def _lost_error() -> dict:
    return {"status": 500, "error": InternalError(
        "This input repeats an earlier one whose result was lost; it was not embedded.",
        code="input_lost").to_payload()}
