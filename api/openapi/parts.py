"""The pieces every resource's part of the document is built from: error and JSON responses, headers, ids, lists."""

from __future__ import annotations

from embedserve import defaults

ERROR = {"$ref": "#/components/schemas/Error"}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}}
REQUEST_ID = {"x-request-id": {"description": "The request id (the client's, when it sent a valid one).",
                               "schema": {"type": "string"}}}
RATE_HEADERS = {
    f"x-ratelimit-{what}-{dim}": {"description": f"{what} of the key's {dim}-per-minute limit (limited keys only).",
                                  "schema": {"type": "string"}}
    for what in ("limit", "remaining", "reset") for dim in ("requests", "tokens")}
KEYED = {"security": [{"bearerAuth": []}]}

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
# One input's error inside a job result or an error sample.
ITEM_ERROR = ERROR_SCHEMA["properties"]["error"]
TIME = {"type": "integer", "description": "Unix seconds."}
TIME_OR_NULL = {"type": ["integer", "null"], "description": "Unix seconds, or null until it happens."}
COUNTS = {"type": "object", "required": ["total", "completed", "failed"],
          "properties": {n: {"type": "integer", "minimum": 0} for n in ("total", "completed", "failed")}}
LIST_PARAMS = [
    {"name": "limit", "in": "query", "required": False, "description": "Page size.",
     "schema": {"type": "integer", "minimum": 1, "maximum": defaults.LIST_LIMIT_MAX,
                "default": defaults.LIST_LIMIT_DEFAULT}},
    {"name": "after", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "An id from the previous page (its `last_id`): list what comes after it."},
]


def error(description: str, *, retry: bool = False) -> dict:
    """An error response: the Error schema, with Retry-After when waiting may help."""
    headers = {**REQUEST_ID, **(RETRY_AFTER if retry else {})}
    return {"description": description, "headers": headers, "content": {"application/json": {"schema": ERROR}}}


def json_response(description: str, schema: dict, headers: dict | None = None) -> dict:
    """A JSON response with `schema`."""
    return {"description": description, "headers": {**REQUEST_ID, **(headers or {})},
            "content": {"application/json": {"schema": schema}}}


def json_body(component: str, example: dict) -> dict:
    """A required JSON request body: the contract's component schema (api/contract), with an example."""
    return {"required": True, "content": {"application/json": {"schema": ref(component), "example": example}}}


def ref(component: str) -> dict:
    return {"$ref": f"#/components/schemas/{component}"}


def rate_limited(description: str) -> dict:
    """429: the error, with Retry-After and the key's rate headers."""
    return error(description, retry=True) | {"headers": {**REQUEST_ID, **RETRY_AFTER, **RATE_HEADERS}}


AUTH_ERRORS = {"401": error("Missing or unknown API key."),
               "503": error("Redis (the queue) is unreachable.", retry=True)}
BAD_LIST = error("`limit` is not an integer in range.")


def path_id(name: str, example: str) -> dict:
    """A resource id in the path."""
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
            "example": example}


def list_of(component: str) -> dict:
    """A page of a list: OpenAI's `{object: list, data, first_id, last_id, has_more}`."""
    return {"type": "object", "required": ["object", "data", "first_id", "last_id", "has_more"],
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": ref(component)},
                           "first_id": {"type": ["string", "null"]}, "last_id": {"type": ["string", "null"]},
                           "has_more": {"type": "boolean"}}}


def embedding_list(*, failed_items: bool = False) -> dict:
    """OpenAI's embeddings list; with `failed_items` (a job's result) an item may carry `embedding: null`
    and its `error`."""
    vector = [{"type": "array", "items": {"type": "number"},
               "description": "floats; integers for embedding_type int8, uint8, binary, ubinary"},
              {"type": "string", "description": "base64 of the row's bytes: little-endian float32, or one byte "
                                                "per int8/uint8 value, or the packed bits of binary/ubinary"}]
    item = {"object": {"const": "embedding"}, "index": {"type": "integer", "minimum": 0},
            "embedding": {"oneOf": vector},
            "windows": {"type": "array", "description": "With `long_input: windows`: the input's windows in text "
                                                        "order, each vector as `embedding` is.",
                        "items": window_item({"oneOf": vector[:2]})}}
    if failed_items:
        vector.append({"type": "null", "description": "The input failed; see `error`."})
        item["error"] = ITEM_ERROR
    return {"type": "object", "required": ["object", "data", "model", "usage"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {"type": "object", "required": ["object", "index", "embedding"],
                                                    "properties": item}},
                "model": {"type": "string"},
                "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                          "properties": {"prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"},
                                         "cached_inputs": {"type": "integer", "minimum": 0, "description":
                                                           "Inputs whose vector came from the embedding cache "
                                                           "(present only when the model's workers have one)."}}}}}


def window_item(embedding: dict, name: str = "embedding") -> dict:
    """One window of a long input (`long_input: windows`): its vector(s) under `name`, where it is, its tokens."""
    return {"type": "object", "required": [name, "text_start", "text_end", "tokens"], "properties": {
        name: embedding,
        "text_start": {"type": "integer", "minimum": 0, "description": "Character offset (Unicode code point) of "
                                                                      "the window's first character in the input."},
        "text_end": {"type": "integer", "minimum": 0, "description": "Character offset just past its last one: "
                                                                    "input[text_start:text_end] is what was embedded."},
        "tokens": {"type": "integer", "minimum": 1, "description": "Tokens fed to the model for the window (prompt "
                                                                  "and special tokens included): its weight in the "
                                                                  "mean."}}}


def deleted(kind: str) -> dict:
    """The answer to a DELETE."""
    return {"type": "object", "required": ["id", "object", "deleted"],
            "properties": {"id": {"type": "string"}, "object": {"const": kind}, "deleted": {"const": True}}}
