"""The chunk payloads jobs are made of: what a worker is asked to embed, with which options, and what it gives back.

All travel as msgpack: a `ChunkSpec` (with its `ChunkParams`) is stored in the job store (inputs)
and a `ChunkOutput` is a part of a job's result (embedserve/jobs/data.py), read back by compaction
(embedserve/jobs/compaction.py, embedserve/jobs/results.py). The API writes specs and workers
read them, and either may be upgraded first, so a spec written by another version must read the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import msgpack

from embedserve.errors import ServiceError
from embedserve.vector_types import FLOAT, row_bytes


@dataclass(frozen=True)
class ChunkParams:
    """The request options a chunk is embedded with: its job's request's, or those every batch line in it shares.

    Each default is what the option means when the request left it out, and what a stored spec
    means when it has no such key (a spec written before the key existed) or holds nil.
    """

    input_type: str = "document"
    instruction: str | None = None
    truncate: bool = False
    dimensions: int | None = None
    truncation_direction: str = "right"  # which end `truncate` cuts: "right" (the end) or "left" (the start)
    embedding_type: str = FLOAT  # the vector type the job asked for; the job store keeps that form
    long_input: str = "error"  # "mean" / "windows": long inputs are split into windows (worker/windows.py)
    window_overlap: int | None = None  # tokens neighbouring windows share (mean / windows); None: the default

    def to_wire(self) -> dict:
        """The params dict a stored spec holds: the five text options always, as every version wrote them;
        embedding_type only when not float and the long-input pair only when windowed, so other jobs keep the
        params they always had (a reader from before those keys reads them as it always did)."""
        wire = {"input_type": self.input_type, "instruction": self.instruction, "truncate": self.truncate,
                "dimensions": self.dimensions, "truncation_direction": self.truncation_direction}
        if self.embedding_type != FLOAT:
            wire["embedding_type"] = self.embedding_type
        if self.long_input in ("mean", "windows"):
            wire["long_input"], wire["window_overlap"] = self.long_input, self.window_overlap
        return wire

    @classmethod
    def from_wire(cls, wire: dict | None) -> ChunkParams:
        """Read a stored params dict: a missing or nil key is its default; keys a newer API may add are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (wire or {}).items() if k in known and v is not None})


@dataclass
class ChunkSpec:
    """One chunk's work: items (a job's inputs, or a batch's lines) and their flattened inputs."""

    model: str
    items: list[int]  # item index (input index, or batch line) of each item
    counts: list[int]  # inputs of each item
    inputs: list  # every item's inputs, concatenated
    params: ChunkParams = field(default_factory=ChunkParams)
    meta: list | None = None  # per item: [custom_id, encoding_format] for batch lines
    ids: list | None = None  # per item: the caller's id (a string) or None; None when no item has one
    # Items failed before running (a line of an input file that is not a text): item index, as a
    # string, -> {"status": int, "error": {OpenAI error object}}. Such items have count 0 and no inputs.
    bad: dict | None = None
    # Items whose input repeats an item of an earlier chunk of the same job: item index, as a string, ->
    # that earlier item's index. Such an item is tokenized but not embedded; compaction gives it the
    # earlier item's vector (embedserve/jobs/repeats.py). Left out of the stored spec when None.
    repeats: dict | None = None
    # The chunk of each repeat's first occurrence (item, as a string, -> chunk): a worker skips a repeat's
    # forward only once that chunk has finished. A spec from an API before it has none: every repeat skipped.
    repeat_chunks: dict | None = None

    def pack(self) -> bytes:
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["params"] = self.params.to_wire()
        for name in ("repeats", "repeat_chunks"):
            if record[name] is None:  # as every spec without repeats was always written
                del record[name]
        return msgpack.packb(record, use_bin_type=True)

    @classmethod
    def unpack(cls, data: bytes) -> ChunkSpec:
        record = msgpack.unpackb(data, raw=False)
        record["params"] = ChunkParams.from_wire(record.get("params"))
        return cls(**_known(cls, record))

    def all_failed(self, error: ServiceError) -> ChunkOutput:
        """This chunk's output when every item failed with `error` (it was given up, or never ran)."""
        payload = {"status": error.status, "error": error.to_payload()}
        n = len(self.items)
        return ChunkOutput(items=self.items, rows=[0] * n, tokens=[0] * n, dim=0, vectors=b"", errors=[payload] * n,
                           ids=self.ids, embedding_type=self.params.embedding_type)


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
    # `long_input: windows`: per row of `vectors` (failed items have none), its windows, each {"text_start",
    # "text_end", "tokens", "embedding": bytes of embedding_type}; None for other jobs.
    windows: list | None = None
    # Items whose row is a placeholder that compaction fills with an earlier item's vector (ChunkSpec.repeats):
    # item index, as a string, -> the earlier item's index. Left out of the stored part when None.
    repeats: dict | None = None
    cached: int = 0  # inputs whose vector came from the embedding cache; left out of the stored part when 0

    @property
    def row_width(self) -> int:
        """Bytes of one vector."""
        return row_bytes(self.embedding_type, self.dim)

    def pack(self) -> bytes:
        # No windows, repeats or cached keys unless there are some: a reader from before them reads other outputs
        # as it always did.
        record = asdict(self)
        for name, empty in (("windows", None), ("repeats", None), ("cached", 0)):
            if record[name] == empty:
                del record[name]
        return msgpack.packb(record, use_bin_type=True)

    @classmethod
    def unpack(cls, data: bytes) -> ChunkOutput:
        return cls(**_known(cls, msgpack.unpackb(data, raw=False)))

    @property
    def completed(self) -> int:
        return sum(1 for e in self.errors if e is None)

    @property
    def failed(self) -> int:
        return len(self.errors) - self.completed


def _known(cls, record: dict) -> dict:
    """The fields of `record` that `cls` has: a field a newer version adds is ignored by this one."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in record.items() if k in names}
