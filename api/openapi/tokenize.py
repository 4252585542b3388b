"""POST /tokenize and /detokenize (vLLM's shapes): the operations and their answers."""

from __future__ import annotations

from api.contract.tokenize import DetokenizeBody, TokenizeBody
from api.openapi.parts import AUTH_ERRORS, KEYED, RATE_HEADERS, error, json_body, json_response, rate_limited, ref
from embedserve.settings import Settings

_SHARED_ERRORS = {
    "401": AUTH_ERRORS["401"],
    "404": error("Unknown model (code model_not_found)."),
    "413": error("Body over EMBED_MAX_BODY_BYTES."),
    "415": error("The body is not JSON."),
    "429": rate_limited("The key's requests-per-minute limit is reached (tokenizing charges no tokens)."),
    "503": error("No worker for the model came up within EMBED_COLD_START_TIMEOUT, its queue is over "
                 "EMBED_MAX_QUEUE, or Redis is unreachable.", retry=True),
    "504": error("The worker did not answer within EMBED_SYNC_TIMEOUT."),
}


def bodies(settings: Settings) -> tuple:
    """The contract's bodies this resource takes."""
    return (TokenizeBody, DetokenizeBody)


def paths(settings: Settings) -> dict:
    tokenize = {
        **KEYED, "tags": ["tokenize"], "operationId": "tokenize",
        "summary": "A prompt's token ids, as the model's tokenizer makes them (vLLM-compatible)",
        "description": "The raw prompt, with the tokenizer's special tokens unless `add_special_tokens` is false. "
                       "/v1/embeddings may count more: it adds the model's prompt or query instruction, if any.",
        "requestBody": json_body("TokenizeBody", {"model": "all-MiniLM-L6-v2", "prompt": "Hello world"}),
        "responses": {
            "200": json_response("The ids, their count and the model's maximum input length.", ref("TokenizeResponse"),
                                 RATE_HEADERS),
            "400": error("Invalid input (an empty or missing prompt, no model named while not exactly one embedding "
                         "model is served (model_required), bad JSON)."),
            **_SHARED_ERRORS},
    }
    detokenize = {
        **KEYED, "tags": ["tokenize"], "operationId": "detokenize",
        "summary": "The text of token ids (vLLM-compatible)",
        "requestBody": json_body("DetokenizeBody", {"model": "all-MiniLM-L6-v2", "tokens": [101, 7592, 2088, 102]}),
        "responses": {
            "200": json_response("The decoded text.", ref("DetokenizeResponse"), RATE_HEADERS),
            "400": error("Invalid input (missing or empty `tokens`, an id that is not a non-negative integer, an id "
                         "outside the model's vocabulary (code invalid_token_id), no model named while not exactly one "
                         "embedding model is served (model_required), bad JSON)."),
            **_SHARED_ERRORS},
    }
    return {"/tokenize": {"post": tokenize}, "/detokenize": {"post": detokenize}}


def schemas(settings: Settings) -> dict:
    """The response schemas (hand-built, as the responses are)."""
    ids = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    return {
        "TokenizeResponse": {
            "type": "object", "required": ["count", "max_model_len", "tokens"],
            "properties": {"count": {"type": "integer", "minimum": 0},
                           "max_model_len": {"type": "integer", "minimum": 1,
                                             "description": "The most tokens the model takes in one input."},
                           "tokens": ids,
                           "token_strs": {"type": "array", "items": {"type": ["string", "null"]},
                                          "description": "With `return_token_strs`: each token as spelled."}}},
        "DetokenizeResponse": {"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
    }
