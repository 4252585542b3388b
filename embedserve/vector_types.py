"""The vector types a caller may ask for (`embedding_type`) and how a row of each is written out.

The worker computes float32 vectors and quantizes them (worker/quantize.py); what crosses Redis and
lands in the job store is each type's own bytes, the small form:

    float    4 bytes per dimension, little-endian float32
    int8     1 byte per dimension, scalar-quantized with the model's calibrated ranges, signed
    uint8    1 byte per dimension, the same buckets unsigned (int8 + 128)
    ubinary  1 bit per dimension, the sign bits packed 8 per byte (numpy.packbits(v > 0)), unsigned
    binary   the ubinary bytes minus 128, as int8 (sentence-transformers' and Cohere's convention)

With `encoding_format: float` a row is a JSON number array (integers for the quantized types, one
per byte for the bit types); with `base64` it is the row's raw bytes, base64'd. Nothing here needs
numpy: the API imports it.
"""

from __future__ import annotations

import array
import base64
import sys
from collections.abc import Callable
from dataclasses import dataclass

FLOAT = "float"


@dataclass(frozen=True)
class VectorType:
    """One `embedding_type`: its element (array typecode, numpy dtype) and whether it packs bits."""

    name: str
    typecode: str  # array.array's: "f" float32, "b" int8, "B" uint8
    dtype: str  # numpy's dtype string, as msgpack results name it
    bits: bool = False  # one bit per dimension, 8 packed per element

    @property
    def calibrated(self) -> bool:
        """int8/uint8: quantized with the model's calibration ranges."""
        return self.typecode != "f" and not self.bits

    @property
    def itemsize(self) -> int:
        return 4 if self.typecode == "f" else 1

    def values(self, dim: int) -> int:
        """Elements in one row of a `dim`-dimensional vector."""
        return (dim + 7) // 8 if self.bits else dim

    def row_bytes(self, dim: int) -> int:
        """Bytes of one row of a `dim`-dimensional vector."""
        return self.values(dim) * self.itemsize


TYPES: dict[str, VectorType] = {t.name: t for t in (
    VectorType(FLOAT, "f", "<f4"),
    VectorType("int8", "b", "|i1"),
    VectorType("uint8", "B", "|u1"),
    VectorType("binary", "b", "|i1", bits=True),
    VectorType("ubinary", "B", "|u1", bits=True),
)}
EMBEDDING_TYPES = tuple(TYPES)


def vector_type(name: str | None) -> VectorType:
    """The type called `name` (None: float)."""
    return TYPES[name or FLOAT]


def row_bytes(embedding_type: str | None, dim: int) -> int:
    """Bytes of one `dim`-dimensional row of `embedding_type`."""
    return vector_type(embedding_type).row_bytes(dim)


def row_values(embedding_type: str | None, row: bytes) -> list:
    """A row's elements as Python numbers (C speed): floats for float, integers for the others."""
    kind = vector_type(embedding_type)
    values = array.array(kind.typecode)
    values.frombytes(row)
    if kind.itemsize > 1 and sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def floats(row: bytes) -> list[float]:
    """A little-endian float32 row as Python floats."""
    return row_values(FLOAT, row)


def base64_row(row: bytes) -> str:
    """A row's bytes, base64'd: OpenAI's `encoding_format: base64` (little-endian float32 for float)."""
    return base64.b64encode(row).decode("ascii")


def row_encoder(encoding_format: str, embedding_type: str | None = FLOAT) -> Callable[[bytes], list | str]:
    """How a row of `embedding_type` is written in a response for `encoding_format` ("float" or "base64")."""
    if encoding_format == "base64":
        return base64_row
    kind = vector_type(embedding_type)
    return floats if kind.name == FLOAT else (lambda row: row_values(kind.name, row))
