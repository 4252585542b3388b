"""POST /v1/rerank (and /v2/rerank, /rerank): the operation, and the ranked list it answers with."""

from __future__ import annotations

from api.contract.rerank import rerank_body
from api.openapi.parts import AUTH_ERRORS, KEYED, RATE_HEADERS, error, json_body, json_response, rate_limited, ref
from embedserve import defaults
from embedserve.settings import Settings


def bodies(settings: Settings) -> tuple:
    """The contract's bodies this resource takes."""
    return (rerank_body(defaults.MAX_RERANK_DOCUMENTS),)


def paths(settings: Settings) -> dict:
    (body,) = bodies(settings)
    operation = {
        **KEYED, "tags": ["rerank"], "summary": "Score documents against a query (Cohere/Jina-compatible)",
        "requestBody": json_body(body.__name__, {
            "model": "Qwen3-Reranker-0.6B", "query": "capital of China?",
            "documents": ["Beijing is the capital of China.", "Today is Friday."], "top_n": 1}),
        "responses": {
            "200": json_response("Documents by relevance, highest first.", ref("RerankList"), RATE_HEADERS),
            "400": error("Invalid input (empty query or documents, too many documents (code too_many_documents), "
                         "an embedding model named (wrong_model_kind), no model named while not exactly one "
                         "reranker is served (model_required), bad JSON), or too long without truncate (code "
                         "context_length_exceeded)."),
            "401": AUTH_ERRORS["401"],
            "404": error("Unknown model (code model_not_found)."),
            "413": error("Body over EMBED_MAX_BODY_BYTES."),
            "415": error("The body is not JSON."),
            "429": rate_limited("The key's requests- or tokens-per-minute limit is reached."),
            "503": error("No worker for the model came up within EMBED_COLD_START_TIMEOUT, its queue is over "
                         "EMBED_MAX_QUEUE, or Redis is unreachable.", retry=True),
            "504": error("Scoring did not finish within EMBED_SYNC_TIMEOUT."),
        },
    }
    return {"/v1/rerank": {"post": {**operation, "operationId": "rerank"}},
            "/v2/rerank": {"post": {**operation, "operationId": "rerankV2",
                                    "summary": "Same as /v1/rerank (Cohere v2 path)"}},
            "/rerank": {"post": {**operation, "operationId": "rerankUnversioned", "summary": "Same as /v1/rerank"}}}


def schemas(settings: Settings) -> dict:
    """The response schemas (hand-built, as the responses are)."""
    return {"RerankList": {
        "type": "object", "required": ["id", "object", "model", "results", "usage"],
        "properties": {
            "id": {"type": "string"}, "object": {"const": "rerank"}, "model": {"type": "string"},
            "results": {"type": "array", "items": {
                "type": "object", "required": ["index", "relevance_score"],
                "properties": {"index": {"type": "integer", "minimum": 0},
                               "relevance_score": {"type": "number"},
                               "document": {"type": "object", "properties": {"text": {"type": "string"}}}}}},
            "usage": {"type": "object", "required": ["total_tokens"],
                      "properties": {"prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}},
            "meta": {"type": "object"},
        }}}
