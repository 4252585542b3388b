"""The OpenAPI 3.1 description of every route, served at /openapi.json, and the /docs page.

Written by hand next to the routes (they are few), and kept honest by a schemathesis test that
calls the live API with generated requests and checks every response against this document.
The docs page is Swagger UI from the flask-swagger-ui package, which ships its assets: no CDN.
"""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from flask_swagger_ui import get_swaggerui_blueprint

from embedserve import defaults
from embedserve.settings import DEFAULT_MODEL_NAME

bp = Blueprint("openapi", __name__)

_ERROR = {"$ref": "#/components/schemas/Error"}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}}
_REQUEST_ID = {"x-request-id": {"description": "The request id (the client's, when it sent a valid one).",
                                "schema": {"type": "string"}}}
_RATE_HEADERS = {
    f"x-ratelimit-{what}-{dim}": {"description": f"{what} of the key's {dim}-per-minute limit (limited keys only).",
                                  "schema": {"type": "string"}}
    for what in ("limit", "remaining", "reset") for dim in ("requests", "tokens")}


def _error(description: str, *, retry: bool = False) -> dict:
    headers = {**_REQUEST_ID, **(_RETRY_AFTER if retry else {})}
    return {"description": description, "headers": headers,
            "content": {"application/json": {"schema": _ERROR}}}


def _json(description: str, schema: dict, headers: dict | None = None) -> dict:
    return {"description": description, "headers": {**_REQUEST_ID, **(headers or {})},
            "content": {"application/json": {"schema": schema}}}


_AUTH_ERRORS = {"401": _error("Missing or unknown API key."),
                "503": _error("Redis (the queue) is unreachable.", retry=True)}

_EMBEDDINGS = {
    "tags": ["embeddings"],
    "summary": "Create embeddings (OpenAI-compatible)",
    "security": [{"bearerAuth": []}],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/EmbeddingRequest"},
        "example": {"model": DEFAULT_MODEL_NAME, "input": ["The capital of China is Beijing.", "Today is Friday."]}}}},
    "responses": {
        "200": _json("One embedding per input, in input order.", {"$ref": "#/components/schemas/EmbeddingList"},
                     _RATE_HEADERS),
        "400": _error("Invalid input (empty, wrongly typed, too many inputs, too long, unknown token ids, bad JSON)."),
        "401": _AUTH_ERRORS["401"],
        "404": _error("Unknown model (code model_not_found)."),
        "413": _error("Body over EMBED_MAX_BODY_BYTES."),
        "415": _error("The body is not JSON."),
        "429": _error("The key's requests- or tokens-per-minute limit is reached.", retry=True)
        | {"headers": {**_REQUEST_ID, **_RETRY_AFTER, **_RATE_HEADERS}},
        "503": _error("No live worker for the model, its queue is over EMBED_MAX_QUEUE (code queue_full), "
                      "or Redis is unreachable.", retry=True),
        "504": _error("The embedding did not finish within EMBED_SYNC_TIMEOUT."),
    },
}

_RERANK = {
    "tags": ["rerank"],
    "summary": "Score documents against a query (Cohere/Jina-compatible)",
    "security": [{"bearerAuth": []}],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/RerankRequest"},
        "example": {"model": "Qwen3-Reranker-0.6B", "query": "capital of China?",
                    "documents": ["Beijing is the capital of China.", "Today is Friday."], "top_n": 1}}}},
    "responses": {
        "200": _json("Documents by relevance, highest first.", {"$ref": "#/components/schemas/RerankList"},
                     _RATE_HEADERS),
        "400": _error("Invalid input (empty query or documents, too many documents, too long without truncate, "
                      "an embedding model named, bad JSON)."),
        "401": _AUTH_ERRORS["401"],
        "404": _error("Unknown model (code model_not_found)."),
        "413": _error("Body over EMBED_MAX_BODY_BYTES."),
        "415": _error("The body is not JSON."),
        "429": _error("The key's requests- or tokens-per-minute limit is reached.", retry=True)
        | {"headers": {**_REQUEST_ID, **_RETRY_AFTER, **_RATE_HEADERS}},
        "503": _error("No live worker for the model, its queue is over EMBED_MAX_QUEUE, or Redis is unreachable.",
                      retry=True),
        "504": _error("Scoring did not finish within EMBED_SYNC_TIMEOUT."),
    },
}

_MODEL_ID = {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}

SPEC: dict = {
    "openapi": "3.1.0",
    "info": {"title": "embedserve", "version": "0.1.0",
             "description": "Self-hosted, OpenAI-compatible text embeddings. Authenticate with "
                            "`Authorization: Bearer KEY`. Every error is `{\"error\": {message, type, param, code}}`."},
    "paths": {
        "/v1/embeddings": {"post": {**_EMBEDDINGS, "operationId": "createEmbeddings"}},
        "/embeddings": {"post": {**_EMBEDDINGS, "operationId": "createEmbeddingsUnversioned",
                                 "summary": "Same as /v1/embeddings"}},
        "/v1/rerank": {"post": {**_RERANK, "operationId": "rerank"}},
        "/v2/rerank": {"post": {**_RERANK, "operationId": "rerankV2", "summary": "Same as /v1/rerank (Cohere v2 path)"}},
        "/rerank": {"post": {**_RERANK, "operationId": "rerankUnversioned", "summary": "Same as /v1/rerank"}},
        "/v1/models": {"get": {
            "tags": ["models"], "operationId": "listModels", "summary": "Models with a live worker",
            "security": [{"bearerAuth": []}],
            "responses": {"200": _json("The model list.", {"$ref": "#/components/schemas/ModelList"}), **_AUTH_ERRORS}}},
        "/v1/models/{model_id}": {"get": {
            "tags": ["models"], "operationId": "getModel", "summary": "One model by name or alias",
            "security": [{"bearerAuth": []}], "parameters": [_MODEL_ID],
            "responses": {"200": _json("The model.", {"$ref": "#/components/schemas/Model"}),
                          "404": _error("No such model, or none of its workers is live."), **_AUTH_ERRORS}}},
        "/health": {"get": {
            "tags": ["operations"], "operationId": "health", "summary": "Liveness: the process is up",
            "responses": {"200": _json("Up.", {"type": "object", "required": ["status"],
                                               "properties": {"status": {"const": "ok"}}})}}},
        "/ready": {"get": {
            "tags": ["operations"], "operationId": "ready",
            "summary": "Readiness: Redis answers and every known model has a live worker",
            "responses": {"200": _json("Ready.", {"$ref": "#/components/schemas/Readiness"}),
                          "503": _json("Not ready.", {"$ref": "#/components/schemas/Readiness"}, _RETRY_AFTER)}}},
        "/metrics": {"get": {
            "tags": ["operations"], "operationId": "metrics", "summary": "Prometheus metrics (text format)",
            "responses": {"200": {"description": "Prometheus text exposition format 0.0.4.", "headers": _REQUEST_ID,
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "503": _error("Redis is unreachable.", retry=True)}}},
        "/docs/": {"get": {
            "tags": ["operations"], "operationId": "docs", "summary": "This document, rendered (Swagger UI)",
            "responses": {"200": {"description": "HTML page.", "headers": _REQUEST_ID,
                                  "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {
            "tags": ["operations"], "operationId": "openapi", "summary": "This document",
            "responses": {"200": _json("OpenAPI 3.1 document.", {"type": "object"})}}},
    },
    "components": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                           "description": "A static (EMBED_API_KEYS) or managed (`embedserve keys create`) key."}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["message", "type", "param", "code"],
                "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                               "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
            "EmbeddingRequest": {
                "type": "object", "required": ["input"],
                "properties": {
                    "input": {"description": f"Text or token ids; at most {defaults.MAX_INPUTS_PER_REQUEST} inputs.",
                              "oneOf": [
                                  {"type": "string", "minLength": 1},
                                  {"type": "array", "minItems": 1, "maxItems": defaults.MAX_INPUTS_PER_REQUEST,
                                   "items": {"type": "string", "minLength": 1}},
                                  {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
                                  {"type": "array", "minItems": 1, "maxItems": defaults.MAX_INPUTS_PER_REQUEST,
                                   "items": {"type": "array", "minItems": 1,
                                             "items": {"type": "integer", "minimum": 0}}}]},
                    "model": {"type": "string", "minLength": 1, "description": "Served name or alias; optional when one model is served."},
                    "encoding_format": {"enum": ["float", "base64"], "default": "float"},
                    "dimensions": {"type": "integer", "minimum": 1, "description": "Keep the first N dimensions, re-normalized."},
                    "user": {"type": "string", "description": "Accepted and ignored."},
                    "input_type": {"enum": ["query", "document"], "default": "document"},
                    "instruction": {"type": "string", "description": "Instruction for Qwen3-style queries."},
                    "truncate": {"type": "boolean", "default": False},
                }},
            "EmbeddingList": {
                "type": "object", "required": ["object", "data", "model", "usage"],
                "properties": {
                    "object": {"const": "list"},
                    "data": {"type": "array", "items": {
                        "type": "object", "required": ["object", "index", "embedding"],
                        "properties": {"object": {"const": "embedding"}, "index": {"type": "integer", "minimum": 0},
                                       "embedding": {"oneOf": [
                                           {"type": "array", "items": {"type": "number"}},
                                           {"type": "string", "description": "base64 of little-endian float32"}]}}}},
                    "model": {"type": "string"},
                    "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                              "properties": {"prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}},
                }},
            "RerankRequest": {
                "type": "object", "required": ["query", "documents"],
                "properties": {
                    "model": {"type": "string", "minLength": 1,
                              "description": "Served name or alias of a reranker; optional when one model is served."},
                    "query": {"type": "string", "minLength": 1, "pattern": "\\S"},
                    "documents": {"type": "array", "minItems": 1, "maxItems": defaults.MAX_RERANK_DOCUMENTS,
                                  "items": {"oneOf": [
                                      {"type": "string"},
                                      {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}]}},
                    "top_n": {"type": "integer", "minimum": 1},
                    "return_documents": {"type": "boolean", "default": False},
                    "instruction": {"type": "string", "description": "Instruction for Qwen3-Reranker prompts."},
                    "truncate": {"type": "boolean", "default": False},
                }},
            "RerankList": {
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
                }},
            "Model": {
                "type": "object", "required": ["id", "object", "created", "owned_by"],
                "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                               "owned_by": {"type": "string"}, "kind": {"type": "string"},
                               "dimensions": {"type": "integer"}, "max_input_tokens": {"type": "integer"},
                               "aliases": {"type": "array", "items": {"type": "string"}},
                               "workers": {"type": "integer"}}},
            "ModelList": {"type": "object", "required": ["object", "data"],
                          "properties": {"object": {"const": "list"},
                                         "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}},
            "Readiness": {"type": "object", "required": ["status", "redis", "models"],
                          "properties": {"status": {"enum": ["ready", "unavailable"]},
                                         "redis": {"enum": ["ok", "unreachable"]},
                                         "models": {"type": "object", "additionalProperties": {"type": "integer"}}}},
        },
    },
}


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 document."""
    return jsonify(SPEC)


def init_app(app: Flask) -> None:
    """/openapi.json and the Swagger UI page at /docs (assets served locally)."""
    app.register_blueprint(bp)
    app.register_blueprint(get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "embedserve API"}))
