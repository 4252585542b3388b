"""Packed rows: every row's tokens in one matrix, and the per-length-group grid attention runs on.

Shared by the packed forwards of encoders (worker/packed/encoder.py) and decoders
(worker/packed/decoder.py). The linear layers see one (tokens x features) matrix, so they compute
only real tokens; attention, which must see each row on its own, runs per group of similar-length
rows, each group scattered into its own padded (rows x longest) grid and gathered back.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class PackedRows:
    """Rows concatenated: token ids, each token's position and row, and where each row starts."""

    ids: torch.Tensor        # (tokens,)
    positions: torch.Tensor  # (tokens,) position within its row
    row_of: torch.Tensor     # (tokens,) index of the (sorted) row each token belongs to
    starts: torch.Tensor     # (rows,) index of each sorted row's first token
    lengths: torch.Tensor    # (rows,) sorted longest first
    order: torch.Tensor      # (rows,) the caller's row index of each sorted row
    host_lengths: tuple[int, ...] = ()  # `lengths` on the host: the layout is planned without a device sync
    real_rows: int = -1  # the caller's rows; a filler row (see `build`) comes after them

    @classmethod
    def build(cls, rows: list[list[int]], device: torch.device, min_tokens: int = 0) -> PackedRows:
        """Pack `rows` longest first (attention groups runs of similar length; see RowGroups).

        Fewer than `min_tokens` tokens in all get one filler row that makes up the difference (copies
        of the first token): the batch-invariant forward keeps every matrix product at or above the
        size where a row's result stops depending on the row count (worker/invariant/products.py).
        The filler row is computed like any row and dropped by `unsort`.
        """
        real_rows = len(rows)
        short = min_tokens - sum(len(r) for r in rows)
        if short > 0 and rows:
            rows = [*rows, [rows[0][0]] * short]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        rows = [rows[i] for i in order]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        total = int(lengths.sum())
        starts = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        row_of = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        positions = np.arange(total, dtype=np.int64) - starts[row_of]
        # chain iterates in C: a generator over every token took twice as long (2.2 against 1.1 us per 36-token row)
        ids = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=total)
        as_tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        return cls(as_tensor(ids), as_tensor(positions), as_tensor(row_of), as_tensor(starts),
                   as_tensor(lengths), as_tensor(np.asarray(order, dtype=np.int64)), tuple(lengths.tolist()),
                   real_rows)

    @property
    def last(self) -> torch.Tensor:
        """Index of each sorted row's last token."""
        return self.starts + self.lengths - 1

    def unsort(self, pooled: torch.Tensor) -> torch.Tensor:
        """Per-row results back in the caller's order (without the filler row, if any)."""
        out = torch.empty_like(pooled).index_copy_(0, self.order, pooled)
        return out if self.real_rows < 0 or self.real_rows == len(out) else out[:self.real_rows]


# A row shorter than this share of its group's longest row starts a new group: padded attention
# then wastes under 1/GROUP_RATIO^2 of a group's work, for a few more (cheap) calls per layer.
GROUP_RATIO = 0.7


class RowGroups:
    """The rows of a PackedRows in groups of similar length, each attended as its own padded grid.

    Padded attention costs rows x longest^2 per group; one group for a batch of mixed lengths
    (a 165-token row among 25-token ones) made attention a third of the whole forward. Rows
    come sorted longest first (PackedRows.build), so a group is a run of rows, hence a run of
    tokens, and a new one starts where a row is under GROUP_RATIO of its group's longest.
    """

    def __init__(self, packed: PackedRows, ratio: float = GROUP_RATIO):
        """`ratio` 1.0 makes every group one exact length: no row padded (the batch-invariant forward)."""
        lengths = list(packed.host_lengths) or packed.lengths.tolist()
        self.groups: list[RowGroup] = []
        first = start = 0
        for i in range(1, len(lengths) + 1):
            if i == len(lengths) or lengths[i] < ratio * lengths[first]:
                self.groups.append(RowGroup(packed, first, i, start, lengths[first:i]))
                first, start = i, start + sum(lengths[first:i])
        self.padded = any(not group.even for group in self.groups)
        self._slots: torch.Tensor | None = None
        self._packed = packed

    @property
    def cells(self) -> int:
        """Cells of all the groups' grids laid end to end: sum of rows x longest."""
        return sum(group.rows * group.longest for group in self.groups)

    def views(self, grids: torch.Tensor) -> list[torch.Tensor]:
        """Each group's (rows, longest, ...) view of a (cells, ...) tensor from `scatter`."""
        out, offset = [], 0
        for group in self.groups:
            size = group.rows * group.longest
            out.append(grids[offset:offset + size].unflatten(0, (group.rows, group.longest)))
            offset += size
        return out

    def scatter(self, packed_features: torch.Tensor) -> torch.Tensor:
        """(tokens, ...) to every group's padded grid at once, end to end: (cells, ...), padding zero.

        One copy per call whatever the number of groups (none when no group has padding); the
        groups' attention then runs on views of it (`views`), and `gather` brings tokens back.
        """
        if not self.padded:
            return packed_features
        grids = packed_features.new_zeros(self.cells, *packed_features.shape[1:])
        return grids.index_copy_(0, self.slots, packed_features)

    def gather(self, grids: torch.Tensor) -> torch.Tensor:
        """(cells, ...) back to (tokens, ...): the inverse of `scatter`."""
        return grids.index_select(0, self.slots) if self.padded else grids

    @property
    def slots(self) -> torch.Tensor:
        """Each token's cell in the end-to-end grids: its group's offset + row-in-group x longest + position."""
        if self._slots is None:
            row_cell, offset = [], 0
            for group in self.groups:
                row_cell.extend(offset + r * group.longest for r in range(group.rows))
                offset += group.rows * group.longest
            packed = self._packed
            row_cell = torch.tensor(row_cell, dtype=torch.int64).to(packed.ids.device)
            self._slots = row_cell.index_select(0, packed.row_of) + packed.positions
        return self._slots


class RowGroup:
    """Rows [first, last) of a PackedRows, i.e. tokens [start, start + sum(lengths)), as one padded grid.

    In the grid each row starts at column 0 and its padding (zeros) follows it: right-aligned
    padding, so causal attention needs no mask (a real query never sees a later, padded key).
    """

    def __init__(self, packed: PackedRows, first: int, last: int, start: int, lengths: list[int]):
        self.rows, self.longest = last - first, lengths[0]
        self.start, self.tokens = start, sum(lengths)
        self.even = lengths[-1] == self.longest  # sorted longest first: no padding, a plain reshape will do
        self.slots = self.key_mask = None
        if not self.even:  # each token's cell in the grid, from the row and position PackedRows already has
            span = slice(start, start + self.tokens)
            self.slots = (packed.row_of[span] - first) * self.longest + packed.positions[span]
            keys = torch.arange(self.longest, device=packed.ids.device)[None, :] < packed.lengths[first:last, None]
            self.key_mask = keys[:, None, None, :]  # (rows, 1, 1, longest): attend to real keys only

    def grid(self, packed_features: torch.Tensor) -> torch.Tensor:
        """This group's tokens of a (tokens x features) matrix as (rows, longest, features)."""
        mine = packed_features[self.start:self.start + self.tokens]
        if self.even:
            return mine.reshape(self.rows, self.longest, mine.shape[1])
        grid = mine.new_zeros(self.rows * self.longest, mine.shape[1]).index_copy_(0, self.slots, mine)
        return grid.view(self.rows, self.longest, mine.shape[1])

    def ungrid(self, grid: torch.Tensor) -> torch.Tensor:
        """A (rows, longest, features) grid back to this group's (tokens x features)."""
        flat = grid.reshape(self.rows * self.longest, grid.shape[-1])
        return flat if self.even else flat.index_select(0, self.slots)


def pool_packed(mode: str, hidden: torch.Tensor, packed: PackedRows) -> torch.Tensor:
    """Sentence-transformers pooling over packed tokens: one (rows x hidden) tensor."""
    if mode == "cls":
        return hidden.index_select(0, packed.starts)
    if mode == "lasttoken":
        return hidden.index_select(0, packed.last)
    rows = len(packed.lengths)
    if mode == "max":
        out = hidden.new_full((rows, hidden.shape[1]), torch.finfo(hidden.dtype).min)
        return out.scatter_reduce(0, packed.row_of[:, None].expand_as(hidden), hidden, "amax")
    summed = hidden.new_zeros(rows, hidden.shape[1]).index_add_(0, packed.row_of, hidden)
    counts = packed.lengths.to(hidden.dtype)[:, None]
    return summed / (counts.sqrt() if mode == "mean_sqrt_len" else counts)
