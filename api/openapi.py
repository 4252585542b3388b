"""The OpenAPI 3.1 description of every route, served at /openapi.json, and the /docs page.

Written by hand next to the routes (they are few), and kept honest by a schemathesis test that
calls the live API with generated requests and checks every response against this document.
The docs page is Swagger UI from the flask-swagger-ui package, which ships its assets: no CDN.
"""

from __future__ import annotations

import json

from flask import Blueprint, Flask, jsonify
from flask_swagger_ui import get_swaggerui_blueprint

from embedserve import defaults
from embedserve.job_records import JobStatus
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


_JOB = {"$ref": "#/components/schemas/Job"}
_JOB_ACCEPTED = _json("With `Prefer: respond-async`, or on POST /v1/jobs: the job, queued; poll Location.", _JOB,
                      {"Location": {"description": "The job's URL, /v1/jobs/{job_id}.", "required": True,
                                    "schema": {"type": "string"}}})

_AUTH_ERRORS = {"401": _error("Missing or unknown API key."),
                "503": _error("Redis (the queue) is unreachable.", retry=True)}

_PREFER = {"name": "Prefer", "in": "header", "required": False, "schema": {"type": "string"},
           "description": "`respond-async` (RFC 7240): answer 202 with a bulk job (job limits apply) instead of waiting.",
           "example": "respond-async"}

_EMBEDDINGS = {
    "tags": ["embeddings"],
    "summary": "Create embeddings (OpenAI-compatible)",
    "security": [{"bearerAuth": []}],
    "parameters": [_PREFER],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/EmbeddingRequest"},
        "example": {"model": DEFAULT_MODEL_NAME, "input": ["The capital of China is Beijing.", "Today is Friday."]}}}},
    "responses": {
        "200": _json("One embedding per input, in input order.", {"$ref": "#/components/schemas/EmbeddingList"},
                     _RATE_HEADERS),
        "202": _JOB_ACCEPTED,
        "400": _error("Invalid input (empty, wrongly typed, too many inputs, too long, unknown token ids, bad JSON)."),
        "401": _AUTH_ERRORS["401"],
        "404": _error("Unknown model (code model_not_found)."),
        "413": _error("Body over EMBED_MAX_BODY_BYTES (EMBED_MAX_JOB_BODY_BYTES with "
                      "`Prefer: respond-async`)."),
        "415": _error("The body is not JSON."),
        "429": _error("The key's requests- or tokens-per-minute limit is reached.", retry=True)
        | {"headers": {**_REQUEST_ID, **_RETRY_AFTER, **_RATE_HEADERS}},
        "503": _error("No worker for the model came up within EMBED_COLD_START_TIMEOUT (code no_worker), its "
                      "queue is over EMBED_MAX_QUEUE (code queue_full), or Redis is unreachable.", retry=True),
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
        "503": _error("No worker for the model came up within EMBED_COLD_START_TIMEOUT, its queue is over "
                      "EMBED_MAX_QUEUE, or Redis is unreachable.",
                      retry=True),
        "504": _error("Scoring did not finish within EMBED_SYNC_TIMEOUT."),
    },
}

_MODEL_ID = {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}

# -- bulk jobs, Files, Batches ---------------------------------------------------------------

_KEYED = {"security": [{"bearerAuth": []}]}
_LIST_PARAMS = [
    {"name": "limit", "in": "query", "required": False, "description": "Page size.",
     "schema": {"type": "integer", "minimum": 1, "maximum": defaults.LIST_LIMIT_MAX,
                "default": defaults.LIST_LIMIT_DEFAULT}},
    {"name": "after", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "An id from the previous page (its `last_id`): list what comes after it."},
]


def _path_id(name: str, example: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
            "example": example}


def _list_of(ref: str) -> dict:
    return {"type": "object", "required": ["object", "data", "first_id", "last_id", "has_more"],
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {"$ref": ref}},
                           "first_id": {"type": ["string", "null"]}, "last_id": {"type": ["string", "null"]},
                           "has_more": {"type": "boolean"}}}


def _deleted(kind: str) -> dict:
    return {"type": "object", "required": ["id", "object", "deleted"],
            "properties": {"id": {"type": "string"}, "object": {"const": kind}, "deleted": {"const": True}}}


_JSON_BODY_ERRORS = {"400": _error("Invalid JSON body or field (the message and `param` name it)."),
                     "413": _error("Body over the size limit."),
                     "415": _error("The body is not JSON.")}
_JOB_ID = _path_id("job_id", "job_0123456789abcdef0123456789abcdef")
_FILE_ID = _path_id("file_id", "file-0123456789abcdef0123456789abcdef")
_BATCH_ID = _path_id("batch_id", "batch_0123456789abcdef0123456789abcdef")
_NO_JOB = _error("No such job (unknown, expired, deleted, or another key's).")
_NO_FILE = _error("No such file (unknown, expired, deleted, or another key's).")
_NO_BATCH = _error("No such batch (unknown, expired, or another key's).")
_BAD_LIST = _error("`limit` is not an integer in range.")

_RESULT_ACCEPT = {"name": "Accept", "in": "header", "required": False,
                  "description": "The result format: application/json (default), application/x-ndjson, "
                                 "application/msgpack (or application/x-msgpack; at most 4 GiB of vectors), "
                                 "application/vnd.embedserve.msgpack-stream (framed msgpack, any size), "
                                 "application/vnd.apache.parquet.",
                  "schema": {"type": "string"}, "example": "application/x-ndjson"}

_BULK_PATHS = {
    "/v1/jobs": {
        "post": {**_KEYED, "tags": ["jobs"], "operationId": "createJob",
                 "summary": "Submit a bulk embedding job (the embeddings body, with the job limits)",
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"$ref": "#/components/schemas/JobRequest"},
                     "example": {"model": DEFAULT_MODEL_NAME, "input": ["first text", "second text"]}}}},
                 "responses": {"202": _JOB_ACCEPTED,
                               "400": _error("Invalid input (as for /v1/embeddings, with EMBED_MAX_JOB_INPUTS), or "
                                             "more inputs than the key may ever have queued (code "
                                             "queue_limit_exceeded)."),
                               "401": _AUTH_ERRORS["401"],
                               "404": _error("Unknown model (code model_not_found) or input file."),
                               "413": _error("Body over EMBED_MAX_JOB_BODY_BYTES."),
                               "415": _JSON_BODY_ERRORS["415"],
                               "429": _error("The key's requests-per-minute limit, or its cap on queued inputs "
                                             "(code queue_limit_exceeded).", retry=True)
                               | {"headers": {**_REQUEST_ID, **_RETRY_AFTER, **_RATE_HEADERS}},
                               "503": _error("Redis (the queue) is unreachable.", retry=True)}},
        "get": {**_KEYED, "tags": ["jobs"], "operationId": "listJobs", "summary": "The key's jobs, newest first",
                "parameters": _LIST_PARAMS,
                "responses": {"200": _json("A page of jobs.", {"$ref": "#/components/schemas/JobList"}),
                              "400": _BAD_LIST, **_AUTH_ERRORS}}},
    "/v1/jobs/{job_id}": {
        "get": {**_KEYED, "tags": ["jobs"], "operationId": "getJob", "summary": "One job, with its progress",
                "parameters": [_JOB_ID],
                "responses": {"200": _json("The job.", _JOB), "404": _NO_JOB, **_AUTH_ERRORS}},
        "delete": {**_KEYED, "tags": ["jobs"], "operationId": "deleteJob", "summary": "Drop the job and its data",
                   "parameters": [_JOB_ID],
                   "responses": {"200": _json("Deleted.", _deleted("embedding.job.deleted")), "404": _NO_JOB,
                                 **_AUTH_ERRORS}}},
    "/v1/jobs/{job_id}/cancel": {
        "post": {**_KEYED, "tags": ["jobs"], "operationId": "cancelJob",
                 "summary": "Stop the job's remaining chunks (finished ones stay downloadable)",
                 "parameters": [_JOB_ID],
                 "responses": {"200": _json("The job, cancelling or cancelled (unchanged when already finished).",
                                            _JOB),
                               "404": _NO_JOB, **_AUTH_ERRORS}}},
    "/v1/jobs/{job_id}/result": {
        "get": {**_KEYED, "tags": ["jobs"], "operationId": "getJobResult",
                "summary": "The finished job's embeddings, streamed; 202 and the job while it runs",
                "parameters": [_JOB_ID, _RESULT_ACCEPT],
                "responses": {
                    "200": {"description": "Every input in order; a failed input carries its error instead of "
                                           "a vector.", "headers": _REQUEST_ID,
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/JobResultList"}},
                                "application/x-ndjson": {"schema": {
                                    "type": "string", "description": "One JSON object a line: "
                                                                     "{index, embedding} or {index, error}."}},
                                "application/msgpack": {"schema": {
                                    "type": "string", "contentMediaType": "application/msgpack",
                                    "description": "A map: model, shape [n, dim], dtype '<f4', data (float32 "
                                                   "little-endian row-major bytes; failed rows NaN), errors "
                                                   "[{index, error}], usage. One msgpack binary holds at most "
                                                   "4 GiB: a bigger result is 406 (use the msgpack stream)."}},
                                "application/vnd.embedserve.msgpack-stream": {"schema": {
                                    "type": "string",
                                    "contentMediaType": "application/vnd.embedserve.msgpack-stream",
                                    "description": "A sequence of msgpack maps, any size: a header {model, dim, "
                                                   "dtype '<f4', total}; then blocks {start, count, data (count x "
                                                   "dim float32 little-endian bytes, failed rows NaN; at most "
                                                   "EMBED_RESULT_PART_BYTES, default 8 MiB), errors [{index, "
                                                   "error}], ids? (one id or null per row)}; then a trailer "
                                                   "{usage}. A stream without the trailer was cut."}},
                                "application/vnd.apache.parquet": {"schema": {
                                    "type": "string", "contentMediaType": "application/vnd.apache.parquet",
                                    "description": "One Parquet file, columns index (int64), id (string), "
                                                   "embedding (fixed-size list of float32; null when failed), "
                                                   "error (JSON of the error object with its HTTP status), "
                                                   "tokens (int32)."}}}},
                    "202": _json("Not finished: the job; ask again after Retry-After seconds.", _JOB,
                                 {"Retry-After": {**_RETRY_AFTER["Retry-After"], "required": True}}),
                    "404": _NO_JOB,
                    "406": _error("The Accept header names no format the result comes in, or asks for "
                                  "application/msgpack for a result over 4 GiB."),
                    **_AUTH_ERRORS}}},
    "/v1/files": {
        "post": {**_KEYED, "tags": ["files"], "operationId": "uploadFile",
                 "summary": "Upload a JSONL batch input file (OpenAI Files)",
                 "requestBody": {"required": True, "content": {"multipart/form-data": {
                     "schema": {"type": "object", "required": ["file", "purpose"],
                                "properties": {"file": {"type": "string", "format": "binary",
                                                        "contentMediaType": "application/jsonl",
                                                        "description": "One batch request (JSON object) a line."},
                                               "purpose": {"const": "batch"}}},
                     "encoding": {"file": {"contentType": "application/jsonl, application/octet-stream"}},
                     "example": {"purpose": "batch", "file": json.dumps(
                         {"custom_id": "request-1", "method": "POST", "url": "/v1/embeddings",
                          "body": {"model": DEFAULT_MODEL_NAME, "input": "Today is Friday."}}) + "\n"}}}},
                 "responses": {"200": _json("The stored file.", {"$ref": "#/components/schemas/File"}),
                               "400": _error("Not multipart, no `file`, `purpose` not 'batch', a line that is not "
                                             "a JSON object (code invalid_jsonl), empty (code empty_file), or over "
                                             "EMBED_MAX_FILE_BYTES (code file_too_large)."),
                               "413": _error("Body over EMBED_MAX_FILE_BYTES plus room for the multipart envelope."),
                               **_AUTH_ERRORS}},
        "get": {**_KEYED, "tags": ["files"], "operationId": "listFiles", "summary": "The key's files, newest first",
                "parameters": [*_LIST_PARAMS,
                               {"name": "purpose", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "Only files of this purpose (batch, batch_output)."}],
                "responses": {"200": _json("A page of files.", _list_of("#/components/schemas/File")),
                              "400": _BAD_LIST, **_AUTH_ERRORS}}},
    "/v1/files/{file_id}": {
        "get": {**_KEYED, "tags": ["files"], "operationId": "getFile", "summary": "One file's record",
                "parameters": [_FILE_ID],
                "responses": {"200": _json("The file.", {"$ref": "#/components/schemas/File"}), "404": _NO_FILE,
                              **_AUTH_ERRORS}},
        "delete": {**_KEYED, "tags": ["files"], "operationId": "deleteFile", "summary": "Delete the file",
                   "parameters": [_FILE_ID],
                   "responses": {"200": _json("Deleted.", _deleted("file")), "404": _NO_FILE, **_AUTH_ERRORS}}},
    "/v1/files/{file_id}/content": {
        "get": {**_KEYED, "tags": ["files"], "operationId": "getFileContent",
                "summary": "The file's bytes (a batch's output or error file is generated as it streams)",
                "parameters": [_FILE_ID],
                "responses": {"200": {"description": "JSONL: the uploaded bytes, or one OpenAI batch output line "
                                                     "{id, custom_id, response, error} a request.",
                                      "headers": _REQUEST_ID,
                                      "content": {"application/jsonl": {"schema": {"type": "string"}}}},
                              "404": _NO_FILE, **_AUTH_ERRORS}}},
    "/v1/batches": {
        "post": {**_KEYED, "tags": ["batches"], "operationId": "createBatch",
                 "summary": "Start a batch from an uploaded file (OpenAI Batches); a malformed file gives a "
                            "batch with status failed",
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"$ref": "#/components/schemas/BatchRequest"},
                     "example": {"input_file_id": "file-0123456789abcdef0123456789abcdef",
                                 "endpoint": "/v1/embeddings",
                                 "completion_window": defaults.BATCH_COMPLETION_WINDOW}}}},
                 "responses": {"200": _json("The batch.", {"$ref": "#/components/schemas/Batch"}),
                               "400": _error("Invalid field (the message and `param` name it), or the file's "
                                             "purpose is not batch."),
                               "404": _error("No such input file."),
                               "413": _JSON_BODY_ERRORS["413"], "415": _JSON_BODY_ERRORS["415"],
                               **_AUTH_ERRORS}},
        "get": {**_KEYED, "tags": ["batches"], "operationId": "listBatches",
                "summary": "The key's batches, newest first", "parameters": _LIST_PARAMS,
                "responses": {"200": _json("A page of batches.", _list_of("#/components/schemas/Batch")),
                              "400": _BAD_LIST, **_AUTH_ERRORS}}},
    "/v1/batches/{batch_id}": {
        "get": {**_KEYED, "tags": ["batches"], "operationId": "getBatch", "summary": "One batch, with its progress",
                "parameters": [_BATCH_ID],
                "responses": {"200": _json("The batch.", {"$ref": "#/components/schemas/Batch"}),
                              "404": _NO_BATCH, **_AUTH_ERRORS}}},
    "/v1/batches/{batch_id}/cancel": {
        "post": {**_KEYED, "tags": ["batches"], "operationId": "cancelBatch",
                 "summary": "Stop the batch's remaining requests (finished ones stay in its output file)",
                 "parameters": [_BATCH_ID],
                 "responses": {"200": _json("The batch.", {"$ref": "#/components/schemas/Batch"}),
                               "404": _NO_BATCH, **_AUTH_ERRORS}}},
}

_TIME = {"type": "integer", "description": "Unix seconds."}
_TIME_OR_NULL = {"type": ["integer", "null"], "description": "Unix seconds, or null until it happens."}
_COUNTS = {"type": "object", "required": ["total", "completed", "failed"],
           "properties": {n: {"type": "integer", "minimum": 0} for n in ("total", "completed", "failed")}}
_ITEM_ERROR = {"type": "object", "required": ["message", "type", "param", "code"],
               "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                              "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}

_BULK_SCHEMAS = {
    "Job": {
        "type": "object",
        "required": ["id", "object", "model", "status", "created_at", "started_at", "completed_at", "cancelled_at",
                     "expires_at", "encoding_format", "request_counts"],
        "properties": {
            "id": {"type": "string"}, "object": {"const": "embedding.job"}, "model": {"type": "string"},
            "status": {"enum": [s.value for s in JobStatus]},
            "created_at": _TIME, "started_at": _TIME_OR_NULL, "completed_at": _TIME_OR_NULL,
            "cancelled_at": _TIME_OR_NULL, "expires_at": _TIME,
            "encoding_format": {"enum": ["float", "base64"]},
            "request_counts": _COUNTS,
            "errors": {"type": "object", "required": ["object", "data"], "description": "Present when inputs "
                       "failed: the first few item errors, each naming its input `index`.",
                       "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
                           "allOf": [_ITEM_ERROR], "required": ["index"],
                           "properties": {"index": {"type": "integer", "minimum": 0}}}}}},
        }},
    "JobList": _list_of("#/components/schemas/Job"),
    "JobResultList": {
        "type": "object", "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {
                "type": "object", "required": ["object", "index", "embedding"],
                "properties": {"object": {"const": "embedding"}, "index": {"type": "integer", "minimum": 0},
                               "embedding": {"oneOf": [
                                   {"type": "array", "items": {"type": "number"}},
                                   {"type": "string", "description": "base64 of little-endian float32"},
                                   {"type": "null", "description": "The input failed; see `error`."}]},
                               "error": _ITEM_ERROR}}},
            "model": {"type": "string"},
            "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                      "properties": {"prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}}}},
    "File": {
        "type": "object",
        "required": ["id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status",
                     "status_details"],
        "properties": {
            "id": {"type": "string"}, "object": {"const": "file"}, "bytes": {"type": "integer", "minimum": 0},
            "created_at": _TIME, "expires_at": _TIME, "filename": {"type": "string"},
            "purpose": {"enum": ["batch", "batch_output", "user_data"]}, "status": {"const": "processed"},
            "status_details": {"type": "null"}}},
    "BatchRequest": {
        "type": "object", "required": ["input_file_id", "endpoint", "completion_window"],
        "properties": {
            "input_file_id": {"type": "string", "minLength": 1, "description": "A file uploaded with purpose batch."},
            "endpoint": {"const": "/v1/embeddings"},
            "completion_window": {"const": defaults.BATCH_COMPLETION_WINDOW},
            "metadata": {"type": ["object", "null"], "maxProperties": 16,
                         "propertyNames": {"maxLength": 64},
                         "additionalProperties": {"type": "string", "maxLength": 512}}}},
    "Batch": {
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
            "created_at": _TIME, "in_progress_at": _TIME_OR_NULL, "expires_at": _TIME,
            "finalizing_at": _TIME_OR_NULL, "completed_at": _TIME_OR_NULL, "failed_at": _TIME_OR_NULL,
            "expired_at": _TIME_OR_NULL, "cancelling_at": _TIME_OR_NULL, "cancelled_at": _TIME_OR_NULL,
            "request_counts": _COUNTS,
            "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
            "model": {"type": ["string", "null"]},
            "usage": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["input_tokens", "output_tokens", "total_tokens"],
                "properties": {"input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                               "total_tokens": {"type": "integer"},
                               "input_tokens_details": {"type": "object"},
                               "output_tokens_details": {"type": "object"}}}]}}},
}


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
            "tags": ["models"], "operationId": "listModels", "summary": "Models in the catalogue (served now or before, or declared), with their live workers",
            "security": [{"bearerAuth": []}],
            "responses": {"200": _json("The model list.", {"$ref": "#/components/schemas/ModelList"}), **_AUTH_ERRORS}}},
        "/v1/models/{model_id}": {"get": {
            "tags": ["models"], "operationId": "getModel", "summary": "One model by name or alias",
            "security": [{"bearerAuth": []}], "parameters": [_MODEL_ID],
            "responses": {"200": _json("The model.", {"$ref": "#/components/schemas/Model"}),
                          "404": _error("No such model in the catalogue."), **_AUTH_ERRORS}}},
        **_BULK_PATHS,
        "/health": {"get": {
            "tags": ["operations"], "operationId": "health", "summary": "Liveness: the process is up",
            "responses": {"200": _json("Up.", {"type": "object", "required": ["status"],
                                               "properties": {"status": {"const": "ok"}}})}}},
        "/ready": {"get": {
            "tags": ["operations"], "operationId": "ready",
            "summary": "Readiness: Redis answers and the model catalogue is readable",
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
            **_BULK_SCHEMAS,
        },
    },
}

# A job takes the embeddings body with a larger input limit (EMBED_MAX_JOB_INPUTS, set at start).
_EMBEDDING_REQUEST = SPEC["components"]["schemas"]["EmbeddingRequest"]
SPEC["components"]["schemas"]["JobRequest"] = {
    **_EMBEDDING_REQUEST,
    "description": f"The embeddings body; `input` may hold up to EMBED_MAX_JOB_INPUTS ({defaults.MAX_JOB_INPUTS} "
                   f"by default) inputs. Instead of `input`, `input_file_id` names a file uploaded with purpose "
                   f"user_data (one text a line).",
    "required": [],
    "oneOf": [{"required": ["input"], "not": {"required": ["input_file_id"]}},
              {"required": ["input_file_id"], "not": {"required": ["input"]}}],
    "properties": {**_EMBEDDING_REQUEST["properties"],
                   "input_file_id": {"type": "string", "minLength": 1,
                                     "description": "A file uploaded with purpose user_data (.txt or .jsonl)."},
                   "input": {"oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
        {"type": "array", "minItems": 1,
         "items": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}}]}}}


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 document."""
    return jsonify(SPEC)


def init_app(app: Flask) -> None:
    """/openapi.json and the Swagger UI page at /docs (assets served locally)."""
    app.register_blueprint(bp)
    app.register_blueprint(get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "embedserve API"}))
