"""POST /v1/embeddings (and /embeddings): the operation, and the embedding list it answers with."""

from __future__ import annotations

from api.contract.embedding import embedding_body
from api.openapi.jobs import JOB_ACCEPTED
from api.openapi.parts import (
    AUTH_ERRORS,
    KEYED,
    RATE_HEADERS,
    embedding_list,
    error,
    json_body,
    json_response,
    rate_limited,
    ref,
)
from embedserve import defaults
from embedserve.settings import DEFAULT_MODEL_NAME, Settings

PREFER = {"name": "Prefer", "in": "header", "required": False, "schema": {"type": "string"},
          "description": "`respond-async` (RFC 7240): answer 202 with a bulk job (job limits apply) instead of "
                         "waiting.", "example": "respond-async"}


def bodies(settings: Settings) -> tuple:
    """The contract's bodies this resource takes."""
    return (embedding_body(defaults.MAX_INPUTS_PER_REQUEST),)


def paths(settings: Settings) -> dict:
    (body,) = bodies(settings)
    operation = {
        **KEYED, "tags": ["embeddings"], "summary": "Create embeddings (OpenAI-compatible)", "parameters": [PREFER],
        "requestBody": json_body(body.__name__, {
            "model": DEFAULT_MODEL_NAME, "input": ["The capital of China is Beijing.", "Today is Friday."]}),
        "responses": {
            "200": json_response("One embedding per input, in input order.", ref("EmbeddingList"), RATE_HEADERS),
            "202": JOB_ACCEPTED,
            "400": error("Invalid input (empty, wrongly typed, too many inputs, bad JSON; codes too_many_inputs, "
                         "model_required; any token ids on a server started with EMBED_ACCEPT_TOKEN_IDS=false, "
                         "token_ids_not_accepted), or what only the model can refuse: too long (code "
                         "context_length_exceeded), token ids past its vocabulary (invalid_token_id), dimensions "
                         "above its size (dimensions_too_large), more windows than EMBED_MAX_WINDOWS (too_many_windows), "
                         "window_overlap over half a window (window_overlap_too_large), long_input mean or windows "
                         "with token ids (unsupported_long_input)."),
            "401": AUTH_ERRORS["401"],
            "404": error("Unknown model (code model_not_found)."),
            "413": error("Body over EMBED_MAX_BODY_BYTES (EMBED_MAX_JOB_BODY_BYTES with `Prefer: respond-async`)."),
            "415": error("The body is not JSON."),
            "429": rate_limited("The key's requests- or tokens-per-minute limit is reached."),
            "503": error("No worker for the model came up within EMBED_COLD_START_TIMEOUT (code no_worker), its "
                         "queue is over EMBED_MAX_QUEUE (code queue_full), or Redis is unreachable.", retry=True),
            "504": error("The embedding did not finish within EMBED_SYNC_TIMEOUT."),
        },
    }
    return {"/v1/embeddings": {"post": {**operation, "operationId": "createEmbeddings"}},
            "/embeddings": {"post": {**operation, "operationId": "createEmbeddingsUnversioned",
                                     "summary": "Same as /v1/embeddings"}}}


def schemas(settings: Settings) -> dict:
    """The response schemas (hand-built: responses are made straight from the workers' bytes)."""
    return {"EmbeddingList": embedding_list()}
