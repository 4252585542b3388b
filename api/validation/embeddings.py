"""Turn a request body into a checked EmbeddingRequest, or raise InvalidRequest naming the field.

What a body may hold is the contract's (api/contract/embedding.py); here the JSON is decoded, the
body checked against it, and its `input` laid out one entry per output vector. Only what can be
checked without the model happens here; token counts of text inputs are checked by the worker,
which owns the tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from api.contract.embedding import TEXT, TOKENS, WINDOWED, embedding_body, input_shape, job_body
from api.validation.models import resolve_model
from embedserve import defaults
from embedserve.errors import InvalidRequest, UnsupportedMediaType
from embedserve.fleet.registry import ModelCard, Registry, ServedModel
from embedserve.token_ids import not_accepted, out_of_vocabulary

__all__ = ["EmbeddingRequest", "check_against_model", "check_for_model", "check_token_ids_accepted",
           "parse_embedding_request", "parse_job_request", "parse_json_body"]

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
    # The vector types wanted, from one forward pass: /v1/embeddings asks for one, Cohere's /v2/embed for several.
    embedding_types: tuple[str, ...] = ("float",)
    truncation_direction: str = "right"  # without `truncate` it has no effect, as in TEI
    max_tokens: int | None = None  # a text limit below the model's (Cohere's max_tokens), or None
    # An input over the model's maximum: "error", "truncate" (what `truncate` says), "mean" or "windows"
    # (split into windows of `window_overlap` shared tokens by the worker, worker/windows.py).
    long_input: str = "error"
    window_overlap: int | None = None  # None: defaults.WINDOW_OVERLAP, or half a window when that is less

    @property
    def windowed(self) -> bool:
        """Whether long inputs are split into windows (mean or windows) rather than refused or cut."""
        return self.long_input in WINDOWED

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
    """Check an OpenAI embeddings body (plus our extensions) against the contract."""
    checked = embedding_body(max_inputs).check(body)
    return _request(checked, _entries(checked.input))


def parse_job_request(body: object, *, max_inputs: int = defaults.MAX_JOB_INPUTS
                      ) -> tuple[str | None, EmbeddingRequest]:
    """A POST /v1/jobs body: the file id when it names an uploaded user_data file (`input_file_id`)
    instead of `input` (the request's `inputs` then empty), else None; and the request."""
    checked = job_body(max_inputs).check(body)
    if checked.input_file_id is not None:
        return checked.input_file_id, _request(checked, [])
    return None, _request(checked, _entries(checked.input))


def check_for_model(req: EmbeddingRequest, registry: Registry, *, accept_token_ids: bool) -> ServedModel:
    """The served embedding model `req` names, once `req` passed every check before its work is sent:
    token ids allowed at all, the model resolved (api/validation/models.py), `req` within its card.

    The one sequence for /v1/embeddings (answered or as a job), /v1/jobs, /v2/embed and a batch's lines.
    """
    check_token_ids_accepted(req, accept_token_ids)
    served = resolve_model(registry, req.model)
    check_against_model(req, served.card)
    return served


def check_against_model(req: EmbeddingRequest, card: ModelCard) -> None:
    """Checks that need the model card: dimensions, and token ids' range and length.

    The contract cannot say these (they differ by model); each refusal has its own code, which is
    how the schemathesis run tells them from a contract the API and its document disagree on.
    """
    overlap = req.window_overlap or 0
    if req.windowed and not card.max_length and overlap > defaults.MAX_WINDOW_OVERLAP:
        # A model whose maximum is not known yet (declared, no worker): still a bound, so the worker's
        # message can carry it (msgpack refuses integers past 64 bits).
        raise InvalidRequest(f"'window_overlap' must be between 0 and {defaults.MAX_WINDOW_OVERLAP}, got "
                             f"{req.window_overlap}.", param="window_overlap", code="window_overlap_too_large")
    if req.windowed and card.max_length and overlap > card.max_length // 2:
        raise InvalidRequest(f"'window_overlap' must be between 0 and {card.max_length // 2} (half the maximum of "
                             f"{card.max_length} tokens) for model {card.name}, got {req.window_overlap}.",
                             param="window_overlap", code="window_overlap_too_large")
    if req.dimensions is not None and card.dim and req.dimensions > card.dim:
        raise InvalidRequest(f"'dimensions' must be between 1 and {card.dim} for model {card.name}, "
                             f"got {req.dimensions}.", param="dimensions", code="dimensions_too_large")
    if not req.token_ids:
        return
    for i, row in enumerate(req.inputs):
        if card.vocab_size and max(row) >= card.vocab_size:
            raise out_of_vocabulary(i, max(row), card.vocab_size)
        if card.max_length and len(row) > card.max_length and not req.truncate:
            raise InvalidRequest(f"input[{i}] is {len(row)} tokens, more than this model's maximum of "
                                 f"{card.max_length}; shorten it or send \"truncate\": true.",
                                 param="input", code="context_length_exceeded")


def check_token_ids_accepted(req: EmbeddingRequest, accepted: bool) -> None:
    """400 for token-id input when the operator refuses it (EMBED_ACCEPT_TOKEN_IDS=false): for deployments
    whose clients never mean to send ids, where ids inside the vocabulary would embed the wrong text."""
    if req.token_ids and not accepted:
        raise not_accepted()


def _entries(value: str | list) -> list:
    """One entry per output vector: a lone text or a lone token-id array is one input."""
    shape = input_shape(value)
    return [value] if shape in (TEXT, TOKENS) else value


def _request(checked, inputs: list) -> EmbeddingRequest:
    long_input = "truncate" if checked.truncate else checked.long_input
    req = EmbeddingRequest(inputs=inputs, model=checked.model, encoding_format=checked.encoding_format,
                           dimensions=checked.dimensions, input_type=checked.input_type,
                           instruction=checked.instruction, truncate=long_input == "truncate",
                           embedding_types=(checked.embedding_type,),
                           truncation_direction=checked.truncation_direction.lower(), long_input=long_input,
                           window_overlap=checked.window_overlap if long_input in WINDOWED else None)
    check_windowed_text(req)
    return req


def check_windowed_text(req: EmbeddingRequest) -> None:
    """Windows are cut at words and answered with character offsets: token-id inputs have neither."""
    if req.windowed and req.token_ids:
        raise InvalidRequest(f"'long_input': {req.long_input!r} splits texts; token-id inputs take 'error' or "
                             f"'truncate'.", param="long_input", code="unsupported_long_input")
