"""The int8/uint8 calibration ranges of each model, kept with its catalogue entry in Redis.

Scalar quantization maps each dimension's [low, high] onto 256 buckets. If every worker computed
its own ranges, a CPU fp32 worker and a GPU bf16 worker (or the same worker before and after a
restart) would give the same text different bytes. So the first worker to need the ranges of a
model at a width computes them from the fixed calibration set (worker/calibration.py) and offers
them here; the first offer wins (HSETNX) and every worker, then and later, uses the stored one.

Entries are keyed by a fingerprint of the model card's shape as well as the width: a different
model later served under the same name does not inherit ranges that are not its own. They go when
the model leaves the catalogue (`embedserve models remove`, or EMBED_CATALOGUE_TTL with no worker).
"""

from __future__ import annotations

import hashlib

import redis

from embedserve import redis_keys
from embedserve.fleet.catalogue import ModelCard


def card_fingerprint(card: ModelCard) -> str:
    """What must match for two workers to share ranges: the model's kind and shape."""
    shape = f"{card.kind}|{card.model_type}|{card.dim}|{card.max_length}|{card.vocab_size}"
    return hashlib.sha256(shape.encode()).hexdigest()[:16]


class RangeBook:
    """One model's stored ranges: `width` -> 2 x width little-endian float32 (lows, then highs)."""

    def __init__(self, client: redis.Redis, card: ModelCard):
        self.redis = client
        self.key = redis_keys.quant_ranges(card.name)
        self.fingerprint = card_fingerprint(card)

    def _field(self, width: int) -> str:
        return f"{self.fingerprint}:{width}"

    def get(self, width: int) -> bytes | None:
        """The stored ranges for `width`, or None when none were offered yet."""
        return self.redis.hget(self.key, self._field(width))

    def offer(self, width: int, ranges: bytes) -> bytes:
        """Store `ranges` unless some worker got there first; the ranges everyone uses from now on."""
        pipe = self.redis.pipeline()
        pipe.hsetnx(self.key, self._field(width), ranges)
        pipe.hget(self.key, self._field(width))
        return pipe.execute()[1]
