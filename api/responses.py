"""Build OpenAI-shaped response bodies straight from the workers' float32 bytes."""

from __future__ import annotations

import base64
import json

from embedserve.protocol import floats

from api.dispatch import Embedded


def embedding_list(result: Embedded, model: str, encoding_format: str) -> str:
    """`{"object": "list", "data": [...], "model", "usage"}` as JSON text."""
    encode = _base64 if encoding_format == "base64" else floats
    data = []
    index = 0
    for chunk in result.chunks:
        for row in range(chunk.rows):
            data.append({"object": "embedding", "index": index, "embedding": encode(chunk.row(row))})
            index += 1
    usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
    return json.dumps({"object": "list", "data": data, "model": model, "usage": usage})


def _base64(row: bytes) -> str:
    return base64.b64encode(row).decode("ascii")
