"""Turn a request body into a checked EmbeddingRequest, or raise InvalidRequest naming the field.

Only what can be checked without the model happens here; token counts of text inputs are
checked by the worker, which owns the tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from embedserve import defaults
from embedserve.errors import InvalidRequest, UnsupportedMediaType
from embedserve.registry import ModelCard

ENCODING_FORMATS = ("float", "base64")
INPUT_TYPES = ("query", "document")
# Content types a JSON body may arrive with: JSON itself, none, or curl's default for `-d`.
_JSONISH = ("application/json", "", "application/x-www-form-urlencoded", "text/json")


@dataclass(frozen=True)
class EmbeddingRequest:
    """A validated /v1/embeddings body (the model name is not yet resolved)."""

    inputs: list  # list[str] or list[list[int]], one entry per output vector
    model: str | None
    encoding_format: str = "float"
    dimensions: int | None = None
    input_type: str = "document"
    instruction: str | None = None
    truncate: bool = False

    @property
    def token_ids(self) -> bool:
        return bool(self.inputs) and isinstance(self.inputs[0], list)


def parse_json_body(raw: bytes, content_type: str | None) -> object:
    """Decode a JSON body strictly: UTF-8 only, bounded nesting, a clear 400 for anything else."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime not in _JSONISH and not mime.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {mime!r}.")
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid UTF-8 (byte {exc.start}).") from None
    try:
        return json.loads(text)
    except RecursionError:
        # The C parser guards its own recursion; a body this deep is never a valid request.
        raise InvalidRequest("The JSON body is nested too deeply.") from None
    except ValueError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None


def parse_embedding_request(body: object, *, max_inputs: int = defaults.MAX_INPUTS_PER_REQUEST) -> EmbeddingRequest:
    """Check every field of an OpenAI embeddings body plus our extensions."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if "input_file_id" in body:
        raise InvalidRequest("'input_file_id' is accepted only by POST /v1/jobs; send 'input' here.",
                             param="input_file_id")
    if "input" not in body:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    _optional_str(body, "user")  # accepted and ignored: OpenAI uses it only for abuse monitoring
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    return EmbeddingRequest(
        inputs=_parse_inputs(body["input"], max_inputs),
        model=model,
        encoding_format=_choice(body, "encoding_format", ENCODING_FORMATS, "float"),
        dimensions=_dimensions(body.get("dimensions")),
        input_type=_choice(body, "input_type", INPUT_TYPES, "document"),
        instruction=_optional_str(body, "instruction"),
        truncate=_optional_bool(body, "truncate"),
    )


def parse_file_job_request(body: object) -> tuple[str, EmbeddingRequest]:
    """A POST /v1/jobs body that names an uploaded user_data file (`input_file_id`) instead of `input`:
    the file id and the request's other fields (its `inputs` empty)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if "input" in body:
        raise InvalidRequest("Send either 'input' or 'input_file_id', not both.", param="input_file_id")
    file_id = body["input_file_id"]
    if not isinstance(file_id, str) or not file_id:
        raise InvalidRequest("'input_file_id' must be a file id (a string).", param="input_file_id")
    rest = {k: v for k, v in body.items() if k != "input_file_id"}
    req = parse_embedding_request({**rest, "input": "-"})
    return file_id, replace(req, inputs=[])


def check_against_model(req: EmbeddingRequest, card: ModelCard) -> None:
    """Checks that need the model card: dimensions, and token ids' range and length."""
    if req.dimensions is not None and card.dim and req.dimensions > card.dim:
        raise InvalidRequest(f"'dimensions' must be between 1 and {card.dim} for model {card.name}, "
                             f"got {req.dimensions}.", param="dimensions")
    if not req.token_ids:
        return
    for i, row in enumerate(req.inputs):
        if card.vocab_size and max(row) >= card.vocab_size:
            raise InvalidRequest(f"input[{i}] has token id {max(row)}, outside this model's vocabulary "
                                 f"(0..{card.vocab_size - 1}).", param="input", code="invalid_token_id")
        if card.max_length and len(row) > card.max_length and not req.truncate:
            raise InvalidRequest(f"input[{i}] is {len(row)} tokens, more than this model's maximum of "
                                 f"{card.max_length}; shorten it or send \"truncate\": true.",
                                 param="input", code="context_length_exceeded")


def _parse_inputs(value: object, max_inputs: int) -> list:
    if isinstance(value, str):
        return [_text(value, 0)]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'input' must be a non-empty string, array of strings, array of token ids, "
                             "or array of token-id arrays.", param="input")
    if all(_is_token(t) for t in value):
        return [value]  # one input given as token ids
    if len(value) > max_inputs:
        raise InvalidRequest(f"'input' has {len(value)} items; at most {max_inputs} are allowed per request.",
                             param="input", code="too_many_inputs")
    if all(isinstance(item, str) for item in value):
        return [_text(item, i) for i, item in enumerate(value)]
    if all(isinstance(item, list) for item in value):
        for i, row in enumerate(value):
            if not row or not all(_is_token(t) for t in row):
                raise InvalidRequest(f"input[{i}] must be a non-empty array of non-negative integer token ids.",
                                     param="input")
        return value
    raise InvalidRequest("'input' must not mix strings, token ids and arrays; every item must be the same kind.",
                         param="input")


def _text(value: str, index: int) -> str:
    if not value:
        raise InvalidRequest(f"input[{index}] is an empty string; every input must have text.", param="input")
    if not _encodable(value):
        raise InvalidRequest(f"input[{index}] contains an unpaired surrogate (invalid Unicode).", param="input")
    return value


def _encodable(value: str) -> bool:
    """JSON escapes can smuggle in lone surrogates, which no tokenizer or msgpack accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_token(value: object) -> bool:
    return type(value) is int and value >= 0


def _choice(body: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise InvalidRequest(f"'{name}' must be one of {', '.join(allowed)}; got {value!r}.", param=name)
    return value


def _dimensions(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise InvalidRequest(f"'dimensions' must be a positive integer, got {value!r}.", param="dimensions")
    return value


def _optional_str(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string.", param=name)
    if value is not None and not _encodable(value):
        raise InvalidRequest(f"'{name}' contains an unpaired surrogate (invalid Unicode).", param=name)
    return value


def _optional_bool(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be true or false.", param=name)
    return value
