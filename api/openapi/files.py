"""OpenAI Files: upload, list, one file, its content, delete."""

from __future__ import annotations

import json

from api.contract.upload import UploadForm
from api.openapi.parts import (
    AUTH_ERRORS,
    BAD_LIST,
    KEYED,
    LIST_PARAMS,
    REQUEST_ID,
    TIME,
    deleted,
    error,
    json_response,
    list_of,
    path_id,
    ref,
)
from embedserve.settings import DEFAULT_MODEL_NAME, Settings

FILE_ID = path_id("file_id", "file-0123456789abcdef0123456789abcdef")
NO_FILE = error("No such file (unknown, expired, deleted, or another key's).")
_EXAMPLE_LINE = json.dumps({"custom_id": "request-1", "method": "POST", "url": "/v1/embeddings",
                            "body": {"model": DEFAULT_MODEL_NAME, "input": "Today is Friday."}}) + "\n"


def bodies(settings: Settings) -> tuple:
    """The contract's bodies this resource takes: the upload form."""
    return (UploadForm,)


def paths(settings: Settings) -> dict:
    return {
        "/v1/files": {
            "post": {**KEYED, "tags": ["files"], "operationId": "uploadFile",
                     "summary": "Upload a batch input file (JSONL) or a job's input file (OpenAI Files)",
                     "requestBody": {"required": True, "content": {"multipart/form-data": {
                         "schema": ref(UploadForm.__name__),
                         "encoding": {"file": {"contentType": "application/jsonl, text/plain, "
                                                              "application/octet-stream"}},
                         "example": {"purpose": "batch", "file": _EXAMPLE_LINE}}}},
                     "responses": {
                         "200": json_response("The stored file.", ref("File")),
                         "400": error("Not multipart, no `file`, or what only the file's content can refuse: for "
                                      "purpose batch a line that is not a JSON object (code invalid_jsonl), for "
                                      "user_data a name not *.txt or *.jsonl (invalid_file_type), an empty file "
                                      "(empty_file), over EMBED_MAX_FILE_BYTES (file_too_large)."),
                         "413": error("Body over EMBED_MAX_FILE_BYTES plus room for the multipart envelope."),
                         **AUTH_ERRORS}},
            "get": {**KEYED, "tags": ["files"], "operationId": "listFiles", "summary": "The key's files, newest first",
                    "parameters": [*LIST_PARAMS,
                                   {"name": "purpose", "in": "query", "required": False, "schema": {"type": "string"},
                                    "description": "Only files of this purpose (batch, batch_output, user_data)."}],
                    "responses": {"200": json_response("A page of files.", list_of("File")),
                                  "400": BAD_LIST, **AUTH_ERRORS}}},
        "/v1/files/{file_id}": {
            "get": {**KEYED, "tags": ["files"], "operationId": "getFile", "summary": "One file's record",
                    "parameters": [FILE_ID],
                    "responses": {"200": json_response("The file.", ref("File")), "404": NO_FILE, **AUTH_ERRORS}},
            "delete": {**KEYED, "tags": ["files"], "operationId": "deleteFile", "summary": "Delete the file",
                       "parameters": [FILE_ID],
                       "responses": {"200": json_response("Deleted.", deleted("file")), "404": NO_FILE,
                                     **AUTH_ERRORS}}},
        "/v1/files/{file_id}/content": {
            "get": {**KEYED, "tags": ["files"], "operationId": "getFileContent",
                    "summary": "The file's bytes (a batch's output or error file is generated as it streams)",
                    "parameters": [FILE_ID],
                    "responses": {"200": {"description": "JSONL: the uploaded bytes, or one OpenAI batch output "
                                                         "line {id, custom_id, response, error} a request.",
                                          "headers": REQUEST_ID,
                                          "content": {"application/jsonl": {"schema": {"type": "string"}}}},
                                  "404": NO_FILE, **AUTH_ERRORS}}},
    }


def schemas(settings: Settings) -> dict:
    """The file object (hand-built, as the responses are)."""
    return {"File": {
        "type": "object",
        "required": ["id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status",
                     "status_details"],
        "properties": {
            "id": {"type": "string"}, "object": {"const": "file"}, "bytes": {"type": "integer", "minimum": 0},
            "created_at": TIME, "expires_at": TIME, "filename": {"type": "string"},
            "purpose": {"enum": ["batch", "batch_output", "user_data"]}, "status": {"const": "processed"},
            "status_details": {"type": "null"}}}}
