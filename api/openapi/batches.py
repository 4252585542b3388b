"""OpenAI Batches: create, list, one batch, cancel."""

from __future__ import annotations

from api.contract.batch import BatchBody
from api.openapi.jobs import WEBHOOK_DELIVERED_AT
from api.openapi.parts import (
    AUTH_ERRORS,
    BAD_LIST,
    COUNTS,
    KEYED,
    LIST_PARAMS,
    TIME,
    TIME_OR_NULL,
    error,
    json_body,
    json_response,
    list_of,
    path_id,
    ref,
)
from embedserve import defaults
from embedserve.settings import Settings

BATCH_ID = path_id("batch_id", "batch_0123456789abcdef0123456789abcdef")
NO_BATCH = error("No such batch (unknown, expired, or another key's).")
BATCH = ref("Batch")


def bodies(settings: Settings) -> tuple:
    """The contract's bodies this resource takes."""
    return (BatchBody,)


def paths(settings: Settings) -> dict:
    return {
        "/v1/batches": {
            "post": {**KEYED, "tags": ["batches"], "operationId": "createBatch",
                     "summary": "Start a batch from an uploaded file (OpenAI Batches); a malformed file gives a "
                                "batch with status failed",
                     "requestBody": json_body(BatchBody.__name__, {
                         "input_file_id": "file-0123456789abcdef0123456789abcdef", "endpoint": "/v1/embeddings",
                         "completion_window": defaults.BATCH_COMPLETION_WINDOW}),
                     "responses": {"200": json_response("The batch.", BATCH),
                                   "400": error("Invalid field (the message and `param` name it), or the file's "
                                                "purpose is not batch."),
                                   "404": error("No such input file."),
                                   "413": error("Body over the size limit."),
                                   "415": error("The body is not JSON."),
                                   **AUTH_ERRORS}},
            "get": {**KEYED, "tags": ["batches"], "operationId": "listBatches",
                    "summary": "The key's batches, newest first", "parameters": LIST_PARAMS,
                    "responses": {"200": json_response("A page of batches.", list_of("Batch")),
                                  "400": BAD_LIST, **AUTH_ERRORS}}},
        "/v1/batches/{batch_id}": {
            "get": {**KEYED, "tags": ["batches"], "operationId": "getBatch", "summary": "One batch, with its progress",
                    "parameters": [BATCH_ID],
                    "responses": {"200": json_response("The batch.", BATCH), "404": NO_BATCH, **AUTH_ERRORS}}},
        "/v1/batches/{batch_id}/cancel": {
            "post": {**KEYED, "tags": ["batches"], "operationId": "cancelBatch",
                     "summary": "Stop the batch's remaining requests (finished ones stay in its output file)",
                     "parameters": [BATCH_ID],
                     "responses": {"200": json_response("The batch.", BATCH), "404": NO_BATCH, **AUTH_ERRORS}}},
    }


def schemas(settings: Settings) -> dict:
    """The batch object (hand-built, as the responses are)."""
    return {"Batch": {
        "type": "object",
        "required": ["id", "object", "endpoint", "errors", "input_file_id", "completion_window", "status",
                     "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at",
                     "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at",
                     "request_counts", "metadata"],
        "properties": {
            "id": {"type": "string"}, "object": {"const": "batch"}, "endpoint": {"type": "string"},
            "errors": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["object", "data"], "description": "Why validation failed the batch.",
                "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
                    "type": "object", "required": ["code", "message", "param", "line"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                   "param": {"type": ["string", "null"]},
                                   "line": {"type": ["integer", "null"]}}}}}}]},
            "input_file_id": {"type": "string"}, "completion_window": {"type": "string"},
            "status": {"enum": ["validating", "failed", "in_progress", "finalizing", "completed", "expired",
                                "cancelling", "cancelled"]},
            "output_file_id": {"type": ["string", "null"]}, "error_file_id": {"type": ["string", "null"]},
            "created_at": TIME, "in_progress_at": TIME_OR_NULL, "expires_at": TIME,
            "finalizing_at": TIME_OR_NULL, "completed_at": TIME_OR_NULL, "failed_at": TIME_OR_NULL,
            "expired_at": TIME_OR_NULL, "cancelling_at": TIME_OR_NULL, "cancelled_at": TIME_OR_NULL,
            "request_counts": COUNTS,
            "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
            "model": {"type": ["string", "null"]},
            "webhook_delivered_at": WEBHOOK_DELIVERED_AT,
            "usage": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["input_tokens", "output_tokens", "total_tokens"],
                "properties": {"input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                               "total_tokens": {"type": "integer"},
                               "input_tokens_details": {"type": "object"},
                               "output_tokens_details": {"type": "object"}}}]}}}}
