"""A finished native job's result as Parquet files in the job store, readable without the API.

Layout, under the job's prefix in the store (`jobs/<job id>/` by convention):

    result/part-00000.parquet    rows in input order, at most `rows_per_file` rows per file
    result/part-00001.parquet    ...
    result/_manifest.json        written last: its presence means the result is complete

Columns, one row per input:

    index      int64                          the input's position in the job
    id         string (null: no id given)     the caller's id for the input
    embedding  fixed_size_list<float32, dim>  the vector; null when the input failed (for a job that
                                              asked for another embedding_type: int8/uint8 elements,
                                              dim of them, or dim/8 for the packed bit types)
    error      string (null: succeeded)       JSON of the OpenAI error object plus "status" (HTTP)
    tokens     int32                          tokens fed to the model (0 for a failed input)
    windows    list<struct<embedding, text_start, text_end, tokens>>   only for a job that asked for
                                              `long_input: windows`: the input's windows in text order, each
                                              vector as `embedding` is (null when the input failed)

When no input has a vector at all (every one failed), `embedding` is `list<float32>`, all null:
a fixed-size list needs a size and there is none. The schema's metadata names the vectors'
`embedserve.embedding_type` and `embedserve.dim`. The manifest is
`{"format": "parquet", "version": 1, "rows", "dim", "embedding_type", "files": [{"path", "rows"}], "columns"}`,
paths relative to the job's prefix. Its name starts with "_" so that readers of the directory
(pyarrow.dataset, pandas, Spark) skip it as they skip `_SUCCESS`.

Reading a result copied out of the store (or straight from a file:// store's directory):

    pandas:           pd.read_parquet("jobs/<id>/result")
    pyarrow.dataset:  ds.dataset("jobs/<id>/result", format="parquet").to_table()
    DuckDB:           SELECT * FROM 'jobs/<id>/result/*.parquet' ORDER BY index

pyarrow is imported inside the functions: the API imports this module at start and must stay light.
"""

from __future__ import annotations

import array
import json
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from embedserve.jobs.chunks import ChunkOutput
from embedserve.jobs.store.base import Store
from embedserve.vector_types import FLOAT, vector_type

if TYPE_CHECKING:
    import pyarrow as pa

RESULT_DIR = "result/"
# Rows per Parquet row group, here and wherever a result is written as Parquet (the API's Accept: parquet).
ROW_GROUP_ROWS = 16_384
MANIFEST = RESULT_DIR + "_manifest.json"
COLUMNS = {
    "index": "int64: the input's position in the job",
    "id": "string: the caller's id for the input, null when none was given",
    "embedding": "fixed_size_list<float32, dim>: the vector, null when the input failed "
                 "(list<float32>, all null, when no input has a vector)",
    "error": "string: null when the input succeeded, else JSON of the OpenAI error object with 'status' added",
    "tokens": "int32: tokens fed to the model for the input",
}
WINDOWS_COLUMN = {"windows": "list<struct<embedding: fixed_size_list<element, dim>, text_start: int64, "
                             "text_end: int64, tokens: int32>>: the input's windows (long_input: windows), "
                             "text_start/text_end character offsets into the input; null when it failed"}


def _le(data: bytes) -> bytes:
    """Little-endian float32 bytes <-> native ones (Arrow buffers are native; ChunkOutput is LE)."""
    if sys.byteorder == "little":
        return data
    values = array.array("f", data)
    values.byteswap()
    return values.tobytes()


def arrow_element(embedding_type: str) -> pa.DataType:
    """The Arrow type of one element of `embedding_type`'s rows: float32, int8 or uint8."""
    import pyarrow as pa

    return {"f": pa.float32(), "b": pa.int8(), "B": pa.uint8()}[vector_type(embedding_type).typecode]


def result_schema(dim: int, embedding_type: str = FLOAT, windows: bool = False) -> pa.Schema:
    """The result's columns; `windows` adds the windows column (a job that asked for `long_input: windows`)."""
    import pyarrow as pa

    element = arrow_element(embedding_type)
    size = vector_type(embedding_type).values(dim)
    vector = pa.list_(element, size) if dim > 0 else pa.list_(element)
    columns = [("index", pa.int64()), ("id", pa.string()), ("embedding", vector), ("error", pa.string()),
               ("tokens", pa.int32())]
    if windows:
        columns.append(("windows", pa.list_(pa.struct([("embedding", vector), ("text_start", pa.int64()),
                                                       ("text_end", pa.int64()), ("tokens", pa.int32())]))))
    return pa.schema(columns, metadata={"embedserve.embedding_type": embedding_type, "embedserve.dim": str(dim)})


def _vector_values(data: bytes, rows: int, dim: int, embedding_type: str, vector_type_: pa.DataType) -> pa.Array:
    """`rows` vectors of `data` (the store's bytes of `embedding_type`) as the schema's vector list array."""
    import pyarrow as pa

    kind = vector_type(embedding_type)
    values = pa.Array.from_buffers(arrow_element(kind.name), rows * kind.values(dim),
                                   [None, pa.py_buffer(_le(data) if kind.name == FLOAT else data)])
    return pa.Array.from_buffers(vector_type_, rows, [None], children=[values])


def _windows_column(output: ChunkOutput, valid: list[bool], dim: int, field_type: pa.DataType) -> pa.Array:
    """The windows column of one chunk's output: each succeeded row's windows, null for a failed one."""
    import pyarrow as pa

    per_row = iter(output.windows or [])
    # A worker from before long inputs answered without windows: its rows get an empty list, not a failure.
    rows = [next(per_row, []) if ok else None for ok in valid]
    flat = [w for row in rows if row for w in row]
    struct_type = field_type.value_type
    vector = struct_type.field("embedding").type
    if dim and flat:
        embedding = _vector_values(b"".join(w["embedding"] for w in flat), len(flat), dim, output.embedding_type,
                                   vector)
    else:
        embedding = pa.nulls(len(flat), vector)
    structs = pa.StructArray.from_arrays(
        [embedding, pa.array([w["text_start"] for w in flat], pa.int64()),
         pa.array([w["text_end"] for w in flat], pa.int64()), pa.array([w["tokens"] for w in flat], pa.int32())],
        fields=list(struct_type))
    offsets, at = [0], 0
    for row in rows:
        at += len(row or ())
        offsets.append(at)
    mask = pa.array([row is None for row in rows], pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), structs, type=field_type, mask=mask)


def _to_batch(output: ChunkOutput, dim: int, schema: pa.Schema) -> pa.RecordBatch:
    """One chunk's output as Arrow columns; failed inputs get a null vector (zero-filled underneath)."""
    import pyarrow as pa

    n = len(output.items)
    if any(rows not in (0, 1) for rows in output.rows):
        raise ValueError("write_result takes native jobs' outputs: one vector per input at most")
    if output.dim not in (0, dim):
        raise ValueError(f"a chunk has {output.dim}-dimensional vectors in a {dim}-dimensional result")
    valid = [rows == 1 for rows in output.rows]
    kind = vector_type(output.embedding_type)
    width = kind.row_bytes(dim)
    if len(output.vectors) != sum(valid) * width:
        raise ValueError(f"a chunk holds {len(output.vectors)} vector bytes for {sum(valid)} rows of dim {dim}")
    if dim == 0:
        embedding = pa.nulls(n, schema.field("embedding").type)
    else:
        if all(valid):
            data = output.vectors
        else:  # a fixed-size list keeps `dim` slots for a null entry too: fill them with zeros
            pieces, offset, zeros = [], 0, bytes(width)
            for ok in valid:
                pieces.append(output.vectors[offset:offset + width] if ok else zeros)
                offset += width if ok else 0
            data = b"".join(pieces)
        values = pa.Array.from_buffers(arrow_element(kind.name), n * kind.values(dim),
                                       [None, pa.py_buffer(_le(data) if kind.name == FLOAT else data)])
        validity = None if all(valid) else pa.array(valid, pa.bool_()).buffers()[1]
        embedding = pa.Array.from_buffers(schema.field("embedding").type, n, [validity], children=[values])
    errors = [None if err is None else json.dumps({**err["error"], "status": err["status"]}) for err in output.errors]
    columns = [
        pa.array(output.items, pa.int64()),
        pa.array(output.ids if output.ids is not None else [None] * n, pa.string()),
        embedding,
        pa.array(errors, pa.string()),
        pa.array(output.tokens, pa.int32()),
    ]
    if "windows" in schema.names:
        columns.append(_windows_column(output, valid, dim, schema.field("windows").type))
    return pa.record_batch(columns, schema=schema)


class _Rows:
    """Record batches handed out as tables of at most n rows: holds one row group's worth at a time."""

    def __init__(self, batches: Iterator[pa.RecordBatch], schema: pa.Schema):
        self._batches, self._schema = batches, schema
        self._pending: list = []
        self._count = 0

    def take(self, n: int) -> pa.Table | None:
        import pyarrow as pa

        while self._count < n:
            batch = next(self._batches, None)
            if batch is None:
                break
            self._pending.append(batch)
            self._count += batch.num_rows
        if not self._count:
            return None
        table = pa.Table.from_batches(self._pending, self._schema)
        rest = table.slice(n)  # zero-copy slices
        self._pending, self._count = rest.to_batches(), rest.num_rows
        return table.slice(0, n)


def _first_dim(outputs: Iterator[ChunkOutput]) -> tuple[int, list[ChunkOutput]]:
    """The vector size, from the first output that has vectors, and the outputs read to find it.

    Outputs before it have no vectors (all their inputs failed), so holding them costs little.
    """
    seen = []
    for output in outputs:
        seen.append(output)
        if output.dim > 0:
            return output.dim, seen
    return 0, seen


def write_result(store: Store, prefix: str, outputs: Iterable[ChunkOutput], *, dim: int | None = None,
                 embedding_type: str = FLOAT, rows_per_file: int = 200_000,
                 row_group_rows: int = ROW_GROUP_ROWS, windows: bool = False) -> dict:
    """Write a native job's outputs (in chunk order) as `{prefix}result/part-NNNNN.parquet` and the manifest.

    `dim` is the vector size (the job record's); when None it is taken from the first output that
    has vectors. Streams: memory holds about one row group. An earlier result under the prefix is
    removed first. Returns the manifest, which is written last.
    """
    import pyarrow.parquet as pq

    if rows_per_file < 1 or row_group_rows < 1:
        raise ValueError("rows_per_file and row_group_rows must be positive")
    dim, schema, rows = _rows(outputs, dim, embedding_type, windows)
    store.delete(manifest_key(prefix))  # no reader trusts a result while it is being replaced
    store.delete_prefix(prefix + RESULT_DIR)
    files, total = [], 0
    table = rows.take(min(row_group_rows, rows_per_file))
    while table is not None or not files:  # an empty result still gets one (empty) file
        path = f"{RESULT_DIR}part-{len(files):05d}.parquet"
        in_file = 0
        with store.writer(prefix + path) as sink, pq.ParquetWriter(sink, schema) as parquet:
            while table is not None:
                parquet.write_table(table, row_group_size=row_group_rows)
                in_file += table.num_rows
                if in_file >= rows_per_file:
                    table = rows.take(min(row_group_rows, rows_per_file))  # opens the next file
                    break
                table = rows.take(min(row_group_rows, rows_per_file - in_file))
        files.append({"path": path, "rows": in_file})
        total += in_file
    manifest = {"format": "parquet", "version": 1, "rows": total, "dim": dim, "embedding_type": embedding_type,
                "files": files, "columns": {**COLUMNS, **(WINDOWS_COLUMN if windows else {})}}
    store.put(manifest_key(prefix), json.dumps(manifest, indent=1).encode())
    return manifest


def _rows(outputs: Iterable[ChunkOutput], dim: int | None, embedding_type: str,
          windows: bool = False) -> tuple[int, pa.Schema, _Rows]:
    """The vector size, the result schema and the outputs as record batches to take rows from;
    `dim` None (or 0): from the first output that has vectors."""
    outputs = iter(outputs)
    if not dim:
        dim, seen = _first_dim(outputs)
        outputs = _chain(seen, outputs)
    schema = result_schema(dim, embedding_type, windows)
    return dim, schema, _Rows((_to_batch(output, dim, schema) for output in outputs), schema)


def row_groups(outputs: Iterable[ChunkOutput], dim: int | None = None, embedding_type: str = FLOAT,
               rows: int = ROW_GROUP_ROWS, windows: bool = False) -> tuple[pa.Schema, Iterator[pa.Table]]:
    """The result schema and the outputs (in chunk order) as tables of at most `rows` rows, one row
    group each, streamed: for writing a result as Parquet somewhere other than the store."""
    _, schema, taker = _rows(outputs, dim, embedding_type, windows)
    return schema, iter(lambda: taker.take(rows), None)


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    yield from rest


def manifest_key(prefix: str) -> str:
    return prefix + MANIFEST


def read_manifest(store: Store, prefix: str) -> dict | None:
    """The manifest of a complete result, or None when there is none (not written, or being replaced)."""
    raw = store.get(manifest_key(prefix))
    return json.loads(raw) if raw is not None else None


def iter_result_batches(store: Store, prefix: str) -> Iterator[pa.RecordBatch]:
    """The result's rows as record batches (one per row group), files in manifest order.

    Reads through `store.open`, so memory holds one row group; KeyError when there is no result.
    """
    import pyarrow.parquet as pq

    manifest = read_manifest(store, prefix)
    if manifest is None:
        raise KeyError(f"{prefix}{MANIFEST}")
    for entry in manifest["files"]:
        with store.open(prefix + entry["path"]) as source:
            parquet = pq.ParquetFile(source)
            for group in range(parquet.num_row_groups):
                # One thread: pyarrow's allocations stay in the caller's heap, which the API gives back after a
                # result (api/memory.py); one column (the vectors) holds nearly all the bytes anyway.
                table = parquet.read_row_group(group, use_threads=False).combine_chunks()
                yield from table.to_batches()


def to_chunk_output(batch: pa.RecordBatch) -> ChunkOutput:
    """A record batch of a result file as a ChunkOutput, so result streamers read files and chunk parts alike."""
    import pyarrow as pa

    embedding = batch.column("embedding")
    meta = batch.schema.metadata or {}
    kind = vector_type(meta.get(b"embedserve.embedding_type", FLOAT.encode()).decode())
    size = embedding.type.list_size if pa.types.is_fixed_size_list(embedding.type) else 0
    dim = int(meta[b"embedserve.dim"]) if size and b"embedserve.dim" in meta else size
    n = batch.num_rows
    # Columns with no nulls (vectors) or only nulls (errors, ids), the usual result, skip a Python object per row.
    rows = [1] * n if not embedding.null_count else [int(ok) for ok in embedding.is_valid().to_pylist()]
    if dim and sum(rows):
        # flatten() skips null entries and honours the array's offset; copy its element bytes out whole.
        values = (embedding.drop_null() if embedding.null_count else embedding).flatten()
        data = values.buffers()[1]
        raw = data[values.offset * kind.itemsize:(values.offset + len(values)) * kind.itemsize].to_pybytes()
        vectors = _le(raw) if kind.name == FLOAT else raw
    else:
        vectors = b""
    errors = [None] * n
    if batch.column("error").null_count < n:
        for row, text in enumerate(batch.column("error").to_pylist()):
            if text is not None:
                error = json.loads(text)
                errors[row] = {"status": error.pop("status"), "error": error}
    ids = batch.column("id").to_pylist() if batch.column("id").null_count < n else None
    return ChunkOutput(items=batch.column("index").to_pylist(), rows=rows,
                       tokens=batch.column("tokens").to_pylist(), dim=dim, vectors=vectors, errors=errors,
                       ids=ids if ids is not None and any(i is not None for i in ids) else None,
                       embedding_type=kind.name, windows=_read_windows(batch, kind))


def _read_windows(batch: pa.RecordBatch, kind) -> list | None:
    """The windows column (when the result has one) as ChunkOutput.windows: per succeeded row, its windows."""
    if "windows" not in batch.schema.names:
        return None
    out = []
    for row in batch.column("windows").to_pylist():
        if row is None:
            continue
        out.append([{"text_start": w["text_start"], "text_end": w["text_end"], "tokens": w["tokens"],
                     "embedding": _row_bytes(w["embedding"], kind)} for w in row])
    return out


def _row_bytes(values: list, kind) -> bytes:
    """One vector read back from Parquet as the store's bytes (little-endian for float)."""
    row = array.array(kind.typecode, values)
    return _le(row.tobytes()) if kind.name == FLOAT else row.tobytes()
