"""A job's result rows as JSON text, many rows per call: the JSON list's entries and ndjson's lines.

orjson writes the text. A float32 element is widened to a double, as json.dumps was given it before,
and written as the shortest text that reads back as that double: the digits Python's repr writes, so
every number parses to the same value as before (the spelling may differ: `1e-5` for `1e-05`,
`0.00001234` for `1.234e-05`). Other differences from json.dumps: no spaces after `:` and `,`;
non-ASCII characters of ids and messages as UTF-8 rather than \\u escapes; a non-finite element
(no model's normalized output has one) as null rather than NaN, which is not JSON.

The elements of many rows are made Python numbers in one call (array.tolist), then each row is
one orjson call and one %-format: no numpy, which the API does not import (pyarrow does not need it).
"""

from __future__ import annotations

import array
import binascii
import sys
from collections.abc import Iterator

import orjson

from embedserve.jobs.chunks import ChunkOutput
from embedserve.vector_types import VectorType

# Elements turned into Python numbers at a time (~32 bytes each while a piece is written): about
# 2 MiB of them, and about 1 MiB of text per piece for float rows.
PIECE_VALUES = 1 << 16

# The start of an entry (its index follows) and what comes between a failed entry's id and its error.
NDJSON_ENTRY = (b'{"index":', b',"error":')
LIST_ENTRY = (b'{"object":"embedding","index":', b',"embedding":null,"error":')


def entries(output: ChunkOutput, kind: VectorType, encoding_format: str, shape: tuple[bytes, bytes]
            ) -> Iterator[list[bytes]]:
    """The output's rows as JSON objects, a list of them per piece of at most PIECE_VALUES elements:
    `{start}I[,"id":ID],"embedding":E[,"windows":W]}` for a row that succeeded, `{start}I[,"id":ID]{failed}ERR}`
    else; W (`long_input: windows`) as the sync response lists them."""
    start, failed = shape
    width = output.row_width
    per_row = max(1, kind.values(output.dim))
    step = max(1, PIECE_VALUES // per_row)
    succeeded = start + b'%d,"embedding":%b}'
    offset, done = 0, 0  # bytes and rows of output.vectors written
    for first in range(0, len(output.items), step):
        items = output.items[first:first + step]
        errors = output.errors[first:first + step]
        ids = output.ids[first:first + step] if output.ids is not None else None
        valid = errors.count(None)
        vectors = embeddings(output.vectors[offset:offset + valid * width], kind, width, encoding_format)
        offset += valid * width
        if ids is None and valid == len(items) and output.windows is None:  # the common piece: vectors only
            yield [succeeded % row for row in zip(items, vectors)]
            done += valid
            continue
        out, vector = [], iter(vectors)
        for index, error, caller_id in zip(items, errors, ids or [None] * len(items)):
            head = start + b"%d" % index
            if caller_id is not None:
                head += b',"id":' + orjson.dumps(caller_id)
            if error is None:
                tail = b"}" if output.windows is None else \
                    b',"windows":' + windows_json(output.windows[done], kind, width, encoding_format) + b"}"
                out.append(head + b',"embedding":' + next(vector) + tail)
                done += 1
            else:
                out.append(head + failed + orjson.dumps(error["error"]) + b"}")
        yield out


def windows_json(windows: list[dict], kind: VectorType, width: int, encoding_format: str) -> bytes:
    """One row's windows as a JSON array of {"embedding", "text_start", "text_end", "tokens"}."""
    vectors = embeddings(b"".join(w["embedding"] for w in windows), kind, width, encoding_format)
    return b"[" + b",".join(b'{"embedding":%b,"text_start":%d,"text_end":%d,"tokens":%d}'
                            % (vector, w["text_start"], w["text_end"], w["tokens"])
                            for vector, w in zip(vectors, windows)) + b"]"


def embeddings(vectors: bytes, kind: VectorType, width: int, encoding_format: str) -> list[bytes]:
    """Each `width`-byte row of `vectors` as JSON: a number array, or (base64) a string of its bytes."""
    if not vectors:
        return []
    if encoding_format == "base64":
        return [b'"%b"' % binascii.b2a_base64(vectors[at:at + width], newline=False)
                for at in range(0, len(vectors), width)]
    values = array.array(kind.typecode)
    values.frombytes(vectors)
    if kind.itemsize > 1 and sys.byteorder == "big":  # the store's rows are little-endian
        values.byteswap()
    numbers, per_row = values.tolist(), width // kind.itemsize
    return [orjson.dumps(numbers[at:at + per_row]) for at in range(0, len(numbers), per_row)]
