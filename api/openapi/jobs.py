"""Native bulk jobs: POST/GET /v1/jobs, one job, its cancel and its streamed result."""

from __future__ import annotations

from api.contract.embedding import ENCODING_FORMATS, LONG_INPUTS, job_body
from api.openapi.parts import (
    AUTH_ERRORS,
    BAD_LIST,
    COUNTS,
    ITEM_ERROR,
    KEYED,
    LIST_PARAMS,
    REQUEST_ID,
    RETRY_AFTER,
    TIME,
    TIME_OR_NULL,
    deleted,
    embedding_list,
    error,
    json_body,
    json_response,
    list_of,
    path_id,
    rate_limited,
    ref,
)
from embedserve.jobs.records import JobStatus
from embedserve.settings import DEFAULT_MODEL_NAME, Settings
from embedserve.vector_types import EMBEDDING_TYPES

JOB = ref("Job")
# An extension on jobs and batches of a key with a webhook endpoint (docs/webhooks.md).
WEBHOOK_DELIVERED_AT = {**TIME_OR_NULL, "description": "Present when the key had a webhook endpoint at submission: "
                        "when a receiver accepted the event of the job's end (null until then)."}
JOB_ACCEPTED = json_response("With `Prefer: respond-async`, or on POST /v1/jobs: the job, queued; poll Location.", JOB,
                             {"Location": {"description": "The job's URL, /v1/jobs/{job_id}.", "required": True,
                                           "schema": {"type": "string"}}})
JOB_ID = path_id("job_id", "job_0123456789abcdef0123456789abcdef")
NO_JOB = error("No such job (unknown, expired, deleted, or another key's).")
# The result's formats are its 200 response's media types; the client picks one with Accept. Not
# a header parameter: OpenAPI ignores one named Accept, and what it accepts is said by the responses.
RESULT_NEGOTIATION = ("Pick the format with Accept: application/json (default), application/x-ndjson, "
                      "application/msgpack (or application/x-msgpack; at most 4 GiB of vectors), "
                      "application/vnd.embedserve.msgpack-stream (framed msgpack, any size), "
                      "application/vnd.apache.parquet. Any other is 406.")


def bodies(settings: Settings) -> tuple:
    """The contract's bodies this resource takes: the job body with the limit set at start."""
    return (job_body(settings.max_job_inputs),)


def paths(settings: Settings) -> dict:
    (body,) = bodies(settings)
    return {
        "/v1/jobs": {
            "post": {**KEYED, "tags": ["jobs"], "operationId": "createJob",
                     "summary": "Submit a bulk embedding job (the embeddings body, with the job limits)",
                     "requestBody": json_body(body.__name__, {"model": DEFAULT_MODEL_NAME,
                                                              "input": ["first text", "second text"]}),
                     "responses": {
                         "202": JOB_ACCEPTED,
                         "400": error("Invalid input (as for /v1/embeddings, with EMBED_MAX_JOB_INPUTS), an input "
                                      "file of another purpose, or more inputs than the key may ever have queued "
                                      "(code queue_limit_exceeded)."),
                         "401": AUTH_ERRORS["401"],
                         "404": error("Unknown model (code model_not_found) or input file."),
                         "413": error("Body over EMBED_MAX_JOB_BODY_BYTES."),
                         "415": error("The body is not JSON."),
                         "429": rate_limited("The key's requests-per-minute limit, or its cap on queued inputs "
                                             "(code queue_limit_exceeded)."),
                         "503": error("Redis (the queue) is unreachable.", retry=True)}},
            "get": {**KEYED, "tags": ["jobs"], "operationId": "listJobs", "summary": "The key's jobs, newest first",
                    "parameters": LIST_PARAMS,
                    "responses": {"200": json_response("A page of jobs.", ref("JobList")),
                                  "400": BAD_LIST, **AUTH_ERRORS}}},
        "/v1/jobs/{job_id}": {
            "get": {**KEYED, "tags": ["jobs"], "operationId": "getJob", "summary": "One job, with its progress",
                    "parameters": [JOB_ID],
                    "responses": {"200": json_response("The job.", JOB), "404": NO_JOB, **AUTH_ERRORS}},
            "delete": {**KEYED, "tags": ["jobs"], "operationId": "deleteJob", "summary": "Drop the job and its data",
                       "parameters": [JOB_ID],
                       "responses": {"200": json_response("Deleted.", deleted("embedding.job.deleted")),
                                     "404": NO_JOB, **AUTH_ERRORS}}},
        "/v1/jobs/{job_id}/cancel": {
            "post": {**KEYED, "tags": ["jobs"], "operationId": "cancelJob",
                     "summary": "Stop the job's remaining chunks (finished ones stay downloadable)",
                     "parameters": [JOB_ID],
                     "responses": {"200": json_response("The job, cancelling or cancelled (unchanged when already "
                                                        "finished).", JOB),
                                   "404": NO_JOB, **AUTH_ERRORS}}},
        "/v1/jobs/{job_id}/result": {
            "get": {**KEYED, "tags": ["jobs"], "operationId": "getJobResult",
                    "summary": "The finished job's embeddings, streamed; 202 and the job while it runs",
                    "description": RESULT_NEGOTIATION, "parameters": [JOB_ID],
                    "responses": {
                        "200": {"description": "Every input in order; a failed input carries its error instead of "
                                               "a vector.", "headers": REQUEST_ID, "content": RESULT_FORMATS},
                        "202": json_response("Not finished: the job; ask again after Retry-After seconds.", JOB,
                                             {"Retry-After": {**RETRY_AFTER["Retry-After"], "required": True}}),
                        "404": NO_JOB,
                        "406": error("The Accept header names no format the result comes in, or asks for "
                                     "application/msgpack for a result over 4 GiB."),
                        "410": error("The job's data expired (EMBED_JOB_TTL after submission) and was deleted: "
                                     "code job_expired."),
                        **AUTH_ERRORS}}},
    }


RESULT_FORMATS = {
    "application/json": {"schema": ref("JobResultList")},
    "application/x-ndjson": {"schema": {
        "type": "string", "description": "One JSON object a line: {index, embedding} or {index, error}."}},
    "application/msgpack": {"schema": {
        "type": "string", "contentMediaType": "application/msgpack",
        "description": "A map: model, shape [n, values per row], dtype ('<f4'; '|i1' or '|u1' for the job's "
                       "embedding_type int8/binary or uint8/ubinary), embedding_type, data (row-major bytes; failed "
                       "rows NaN, or zeros for the quantized types), errors [{index, error}], usage. One msgpack "
                       "binary holds at most 4 GiB: a bigger result is 406 (use the msgpack stream)."}},
    "application/vnd.embedserve.msgpack-stream": {"schema": {
        "type": "string", "contentMediaType": "application/vnd.embedserve.msgpack-stream",
        "description": "A sequence of msgpack maps, any size: a header {model, dim, dtype, embedding_type, total}; "
                       "then blocks {start, count, data (count rows of dtype, failed rows NaN or zeros; at "
                       "most EMBED_RESULT_PART_BYTES, default 8 MiB), errors [{index, error}], ids? (one id or "
                       "null per row)}; then a trailer {usage}. A stream without the trailer was cut."}},
    "application/vnd.apache.parquet": {"schema": {
        "type": "string", "contentMediaType": "application/vnd.apache.parquet",
        "description": "One Parquet file, columns index (int64), id (string), embedding (fixed-size list of "
                       "float32, or int8/uint8 for the job's embedding_type; null when failed), error (JSON of "
                       "the error object with its HTTP status), "
                       "tokens (int32)."}},
}


def schemas(settings: Settings) -> dict:
    """The response schemas (hand-built, as the responses are)."""
    return {
        "Job": {
            "type": "object",
            "required": ["id", "object", "model", "status", "created_at", "started_at", "completed_at",
                         "cancelled_at", "expires_at", "encoding_format", "request_counts"],
            "properties": {
                "id": {"type": "string"}, "object": {"const": "embedding.job"}, "model": {"type": "string"},
                "status": {"enum": [s.value for s in JobStatus]},
                "created_at": TIME, "started_at": TIME_OR_NULL, "completed_at": TIME_OR_NULL,
                "cancelled_at": TIME_OR_NULL, "expires_at": TIME,
                "encoding_format": {"enum": list(ENCODING_FORMATS)},
                "embedding_type": {"enum": list(EMBEDDING_TYPES)},
                "long_input": {"enum": list(LONG_INPUTS), "description": "The request's `long_input`; `windows` "
                                                                          "gives each result row its windows."},
                "request_counts": COUNTS,
                "cached_inputs": {"type": "integer", "minimum": 0, "description": "Inputs whose vector came from "
                                  "the embedding cache (EMBED_CACHE_URL); counted when the job's result is written."},
                "errors": {"type": "object", "required": ["object", "data"], "description": "Present when inputs "
                           "failed: the first few item errors, each naming its input `index`.",
                           "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
                               "allOf": [ITEM_ERROR], "required": ["index"],
                               "properties": {"index": {"type": "integer", "minimum": 0}}}}}},
                "webhook_delivered_at": WEBHOOK_DELIVERED_AT,
            }},
        "JobList": list_of("Job"),
        "JobResultList": embedding_list(failed_items=True),
    }
