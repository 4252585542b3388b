"""Digests naming one input and every option that changes its full-width float vector.

What enters: the text (or token ids) and, for texts, the prompt the model puts in front of it
(what `input_type` and `instruction` turn into for this model: two spellings of the same prompt
share entries, and `input_type` on a model without prompts changes nothing), truncation, its
direction and a `max_tokens` limit. What does not: `dimensions` and `embedding_type`. The cache
holds the float vector before both, and both are pure functions of it (a cut and re-normalization;
quantization with the model's shared ranges), so one entry serves every width and type.
The model's identity and the scope are in the entry's name (embedserve/redis_keys.py).
"""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np


def text_options(prefix: str, truncate: bool, direction: str, max_tokens: int | None) -> bytes:
    """The options of a text input, as bytes to digest with it."""
    return b"text:" + json.dumps([prefix, truncate, direction, max_tokens], ensure_ascii=False).encode(
        "utf-8", "surrogatepass")


def ids_options(truncate: bool, direction: str) -> bytes:
    """The options of a token-id input (nothing is added to ids: no prompt, no max_tokens)."""
    return b"ids:" + json.dumps([truncate, direction]).encode()


def input_digests(inputs: list, options: bytes) -> list[str]:
    """One hex digest per input (texts, or lists of token ids) under `options`."""
    out = []
    for item in inputs:
        digest = hashlib.blake2b(digest_size=20)
        digest.update(struct.pack("<Q", len(options)) + options)
        if isinstance(item, str):
            digest.update(item.encode("utf-8", "surrogatepass"))
        else:
            digest.update(np.asarray(item, dtype="<i8").tobytes())
        out.append(digest.hexdigest())
    return out
