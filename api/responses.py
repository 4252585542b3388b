"""Build response bodies (OpenAI's, and Cohere's /v2/embed) straight from the workers' float32 bytes."""

from __future__ import annotations

import json
import uuid

from api.dispatch import Dispatched
from api.validation.cohere import BASE64, CohereEmbed
from api.validation.rerank import RerankRequest
from embedserve.vector_types import FLOAT, floats, row_encoder


def embedding_list(result: Dispatched, model: str, encoding_format: str, embedding_type: str = FLOAT) -> str:
    """`{"object": "list", "data": [...], "model", "usage"}` as JSON text."""
    encode = row_encoder(encoding_format, embedding_type)
    data = []
    index = 0
    for chunk in result.chunks:
        for row in range(chunk.rows):
            item = {"object": "embedding", "index": index, "embedding": encode(chunk.row(row, embedding_type))}
            if chunk.windows is not None:
                item["windows"] = windows_json(chunk.windows[row], encode, embedding_type)
            data.append(item)
            index += 1
    usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
    if result.cached is not None:  # the model's workers have an embedding cache (EMBED_CACHE_URL)
        usage["cached_inputs"] = result.cached
    return json.dumps({"object": "list", "data": data, "model": model, "usage": usage})


def windows_json(windows: list[dict], encode, embedding_type: str) -> list[dict]:
    """An input's windows (`long_input: windows`) as the response lists them, each vector encoded as the input's."""
    return [{"embedding": encode(w["vectors"][embedding_type]), "text_start": w["text_start"],
             "text_end": w["text_end"], "tokens": w["tokens"]} for w in windows]


def rerank_response(result: Dispatched, req: RerankRequest, model: str) -> str:
    """`{"id", "object": "rerank", "model", "results": [...], "usage"}` as JSON text, best first."""
    scores = [score for chunk in result.chunks for score in floats(chunk.vectors)]
    results = []
    for index in ranked(scores, req.top_n):
        item = {"index": index, "relevance_score": scores[index]}
        if req.return_documents:
            item["document"] = {"text": req.documents[index]}
        results.append(item)
    usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
    # `meta` is where Cohere's clients read billing; Jina's and ours read `usage`.
    meta = {"billed_units": {"search_units": 1}, "tokens": {"input_tokens": result.tokens, "output_tokens": 0}}
    return json.dumps({"id": uuid.uuid4().hex, "object": "rerank", "model": model, "results": results,
                       "usage": usage, "meta": meta})


def ranked(scores: list[float], top_n: int | None) -> list[int]:
    """Document indexes by score, highest first (ties keep input order), cut to `top_n`."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return order if top_n is None else order[:top_n]


def cohere_embed_response(result: Dispatched, embed: CohereEmbed) -> str:
    """`{id, embeddings: {type: [...]}, texts, meta, response_type}` as JSON text, types in the asked order."""
    embeddings, encoders = {}, {}
    for kind in embed.types:
        computed, fmt = ("float", "base64") if kind == BASE64 else (kind, "float")
        encode = encoders[kind] = row_encoder(fmt, computed)
        embeddings[kind] = [encode(chunk.row(row, computed)) for chunk in result.chunks for row in range(chunk.rows)]
    meta = {"api_version": {"version": "2"}, "billed_units": {"input_tokens": result.tokens}}
    body = {"id": str(uuid.uuid4()), "embeddings": embeddings, "texts": embed.texts, "meta": meta,
            "response_type": "embeddings_by_type"}
    if embed.request.long_input == "windows":  # ours: each text's windows, every asked type of each
        body["windows"] = [
            [{"text_start": w["text_start"], "text_end": w["text_end"], "tokens": w["tokens"],
              "embeddings": {kind: encoders[kind](w["vectors"]["float" if kind == BASE64 else kind])
                             for kind in embed.types}} for w in chunk.windows[row]]
            for chunk in result.chunks for row in range(chunk.rows)]
    return json.dumps(body)
