"""The chunk payloads jobs are made of: what a worker is asked to embed, and what it gives back.

Both travel as msgpack: a `ChunkSpec` is stored in the job store (inputs) and a `ChunkOutput` is a
part of a job's result (embedserve/jobs/data.py), read back by compaction (embedserve/jobs/results.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack

from embedserve.vector_types import row_bytes


@dataclass
class ChunkSpec:
    """One chunk's work: items (a job's inputs, or a batch's lines) and their flattened inputs."""

    model: str
    items: list[int]  # item index (input index, or batch line) of each item
    counts: list[int]  # inputs of each item
    inputs: list  # every item's inputs, concatenated
    params: dict[str, Any] = field(default_factory=dict)  # input_type, instruction, truncate, dimensions, truncation_direction
    meta: list | None = None  # per item: [custom_id, encoding_format] for batch lines
    ids: list | None = None  # per item: the caller's id (a string) or None; None when no item has one
    # Items failed before running (a line of an input file that is not a text): item index, as a
    # string, -> {"status": int, "error": {OpenAI error object}}. Such items have count 0 and no inputs.
    bad: dict | None = None

    def pack(self) -> bytes:
        return msgpack.packb(asdict(self), use_bin_type=True)

    @classmethod
    def unpack(cls, data: bytes) -> "ChunkSpec":
        return cls(**msgpack.unpackb(data, raw=False))


@dataclass
class ChunkOutput:
    """One chunk's result: vectors of the items that succeeded, an error for each that did not."""

    items: list[int]
    rows: list[int]  # vectors of each item (0 when it failed)
    tokens: list[int]  # tokens of each item
    dim: int  # dimensions of each vector (before any bit packing)
    vectors: bytes  # all rows, row-major, each row_width bytes: little-endian float32 unless embedding_type says
    errors: list  # per item: None or {"status": int, "error": {OpenAI error object}}
    ids: list | None = None  # per item: the caller's id (a string) or None; None when no item has one
    embedding_type: str = "float"  # the job store keeps the asked-for type's small form

    @property
    def row_width(self) -> int:
        """Bytes of one vector."""
        return row_bytes(self.embedding_type, self.dim)

    def pack(self) -> bytes:
        return msgpack.packb(asdict(self), use_bin_type=True)

    @classmethod
    def unpack(cls, data: bytes) -> "ChunkOutput":
        return cls(**msgpack.unpackb(data, raw=False))

    @property
    def completed(self) -> int:
        return sum(1 for e in self.errors if e is None)

    @property
    def failed(self) -> int:
        return len(self.errors) - self.completed
