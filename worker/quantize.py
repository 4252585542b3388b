"""Quantize float32 embeddings into the compact types (embedserve/vector_types.py), as
sentence-transformers' `quantize_embeddings` does, so vectors match what its users index.

- ubinary: numpy.packbits(v > 0) per row; binary: the same bytes minus 128, as int8.
- int8 / uint8: per-dimension ranges [low, high] cut into 255 steps, in float32 as there:
  uint8 = clip(floor((v - low) / step), 0, 255), int8 = uint8 - 128; a dimension with no range
  (low == high) takes step 1.
"""

from __future__ import annotations

import numpy as np

from embedserve.vector_types import FLOAT, vector_type

STEPS = 255


def quantize(vectors: np.ndarray, embedding_type: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """`vectors` (rows x dim float32) as `embedding_type`; int8/uint8 need `ranges` (2 x dim: lows, highs)."""
    kind = vector_type(embedding_type)
    if kind.name == FLOAT:
        return np.ascontiguousarray(vectors, dtype="<f4")
    if kind.bits:
        packed = np.packbits(vectors > 0, axis=-1)
        return packed if kind.typecode == "B" else (packed.astype(np.int16) - 128).astype(np.int8)
    if ranges is None or ranges.shape != (2, vectors.shape[1]):
        raise ValueError(f"{kind.name} needs 2 x {vectors.shape[1]} calibration ranges")
    low = ranges[0].astype(np.float32)
    step = (ranges[1].astype(np.float32) - low) / np.float32(STEPS)
    step = np.where(step == 0, np.float32(1), step)
    buckets = np.clip(np.floor((vectors.astype(np.float32) - low) / step), 0, STEPS)
    return buckets.astype(np.uint8) if kind.typecode == "B" else (buckets - 128).astype(np.int8)


def ranges_of(vectors: np.ndarray) -> np.ndarray:
    """Per-dimension [low, high] of calibration vectors: 2 x dim float32."""
    return np.stack([vectors.min(axis=0), vectors.max(axis=0)]).astype(np.float32)
