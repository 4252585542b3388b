"""POST /v2/embed: Cohere's v2 embed operation, and the embeddings-by-type object it answers with."""

from __future__ import annotations

from api.contract.cohere import cohere_embed_body
from api.openapi.parts import (
    AUTH_ERRORS,
    KEYED,
    RATE_HEADERS,
    error,
    json_body,
    json_response,
    rate_limited,
    ref,
    window_item,
)
from embedserve import defaults
from embedserve.settings import DEFAULT_MODEL_NAME, Settings


def bodies(settings: Settings) -> tuple:
    """The contract's bodies this resource takes."""
    return (cohere_embed_body(defaults.MAX_INPUTS_PER_REQUEST),)


def paths(settings: Settings) -> dict:
    (body,) = bodies(settings)
    operation = {
        **KEYED, "tags": ["embeddings"], "operationId": "cohereEmbed",
        "summary": "Create embeddings of several types at once (Cohere v2-compatible)",
        "requestBody": json_body(body.__name__, {
            "model": DEFAULT_MODEL_NAME, "texts": ["The capital of China is Beijing."],
            "input_type": "search_document", "embedding_types": ["float", "ubinary"]}),
        "responses": {
            "200": json_response("Each asked type's vectors, one per text, in text order.", ref("EmbedByType"),
                                 RATE_HEADERS),
            "400": error("Invalid input (empty, wrongly typed, too many texts, images, bad JSON; codes "
                         "too_many_inputs, model_required), or what only the model can refuse: too long with "
                         "truncate NONE (code context_length_exceeded), output_dimension above its size "
                         "(dimensions_too_large), long_input with truncate NONE or max_tokens, more windows than EMBED_MAX_WINDOWS "
                         "(too_many_windows). The message is also at the top level, as Cohere's is."),
            "401": AUTH_ERRORS["401"],
            "404": error("Unknown model (code model_not_found)."),
            "413": error("Body over EMBED_MAX_BODY_BYTES."),
            "415": error("The body is not JSON."),
            "429": rate_limited("The key's requests- or tokens-per-minute limit is reached."),
            "503": error("No worker for the model came up within EMBED_COLD_START_TIMEOUT (code no_worker), its "
                         "queue is over EMBED_MAX_QUEUE (code queue_full), or Redis is unreachable.", retry=True),
            "504": error("The embedding did not finish within EMBED_SYNC_TIMEOUT."),
        },
    }
    return {"/v2/embed": {"post": operation}}


def schemas(settings: Settings) -> dict:
    """Cohere's EmbedByTypeResponse (hand-built, as the response is)."""
    ints = {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}
    return {"EmbedByType": {
        "type": "object", "required": ["id", "embeddings", "texts", "meta", "response_type"],
        "properties": {
            "id": {"type": "string"},
            "embeddings": {"type": "object", "description": "Only the asked types.", "properties": {
                "float": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                "int8": ints, "uint8": ints, "binary": ints, "ubinary": ints,
                "base64": {"type": "array", "items": {"type": "string",
                                                      "description": "base64 of little-endian float32"}}}},
            "texts": {"type": "array", "items": {"type": "string"}},
            "meta": {"type": "object", "properties": {
                "api_version": {"type": "object", "properties": {"version": {"type": "string"}}},
                "billed_units": {"type": "object", "properties": {"input_tokens": {"type": "integer"}}}}},
            "response_type": {"const": "embeddings_by_type"},
            "windows": {"type": "array", "description": "Ours, with `long_input: windows`: per text, its windows "
                                                        "in text order, each with every asked type.",
                        "items": {"type": "array", "items": window_item({"type": "object"}, "embeddings")}},
        }}}
