"""Cohere's v2 embed body as our EmbeddingRequest, and the model's refusals in Cohere's words (the response is
api/responses.py's).

The mapping (docs/api.md, "POST /v2/embed (Cohere)"):
- `input_type`: search_query / search_document are our query / document; classification and
  clustering pass through to the worker, which uses the model's sentence-transformers prompt of
  that name, else on instruction-aware (Qwen3-style) models an instruction for the task, else none
  (worker/model_files.py).
- `embedding_types`: each is one of ours, computed in one pass (float once, quantized in the
  worker); Cohere's `base64` is the float vector's little-endian float32 bytes, base64'd, as the
  Cohere SDK's own reference says ("the float embedding bytes ... base64 encoding that").
- `output_dimension` is our `dimensions`; `truncate` END / START / NONE is our truncate at the
  right / at the left / refused, END being Cohere's default.
- `long_input` (ours: `mean` or `windows`) is our long_input: a long text is embedded whole instead of cut
  (with `truncate: NONE` or `max_tokens` it is refused: NONE keeps meaning refuse, max_tokens cut).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from api.contract.cohere import cohere_embed_body
from api.validation.embeddings import EmbeddingRequest
from embedserve import defaults
from embedserve.errors import InvalidRequest, ServiceError

INPUT_TYPES = {"search_query": "query", "search_document": "document",
               "classification": "classification", "clustering": "clustering"}
# Cohere's `base64` type is a spelling of the float vector, not a type a worker computes.
BASE64 = "base64"


@dataclass(frozen=True)
class CohereEmbed:
    """A checked /v2/embed body: the request our dispatcher runs, and what the response echoes."""

    request: EmbeddingRequest
    texts: list[str]
    types: tuple[str, ...]  # Cohere's embedding_types as asked, without repeats, in the caller's order


def parse_cohere_embed(body: object, *, max_inputs: int = defaults.MAX_INPUTS_PER_REQUEST) -> CohereEmbed:
    """Check a /v2/embed body against the contract and map it onto an EmbeddingRequest."""
    checked = cohere_embed_body(max_inputs).check(body)
    types = tuple(dict.fromkeys(checked.embedding_types))
    computed = tuple(dict.fromkeys("float" if t == BASE64 else t for t in types))
    cut = checked.truncate != "NONE" and checked.long_input is None
    long_input = checked.long_input or ("truncate" if cut else "error")
    request = EmbeddingRequest(inputs=list(checked.texts), model=checked.model, dimensions=checked.output_dimension,
                               input_type=INPUT_TYPES[checked.input_type], truncate=cut,
                               truncation_direction="left" if checked.truncate == "START" else "right",
                               embedding_types=computed, max_tokens=checked.max_tokens, long_input=long_input,
                               window_overlap=checked.window_overlap if checked.long_input else None)
    return CohereEmbed(request=request, texts=list(checked.texts), types=types)


def within_model(req: EmbeddingRequest, max_length: int) -> EmbeddingRequest:
    """`req` with its max_tokens no higher than the model's maximum, which is what any higher one means.

    The worker takes the lower of the two anyway; lowering it here keeps the number one the wire's
    msgpack can hold (a 64-bit integer): the contract bounds it below only, so 2**64 or 1e300 pass.
    """
    if req.max_tokens is None:
        return req
    return replace(req, max_tokens=min(req.max_tokens, max_length if max_length > 0 else _INT32_MAX))


_INT32_MAX = 2**31 - 1  # a model of unknown maximum (its card says 0): still past any real one


def cohere_error(exc: ServiceError) -> ServiceError:
    """A refusal worded for /v1/embeddings, in this route's words: `texts`, `output_dimension`, END / START.

    The model's checks (the API's against its card, the worker's) name our fields (`input[3]`,
    `'dimensions'`, `"truncate": true`); the index and counts in the message are kept.
    """
    if not isinstance(exc, InvalidRequest) or exc.param not in _COHERE_NAMES:
        return exc
    message = exc.message
    for ours, theirs in _COHERE_WORDS:
        message = message.replace(ours, theirs)
    return InvalidRequest(message, param=_COHERE_NAMES[exc.param], code=exc.code)


_COHERE_NAMES = {"input": "texts", "dimensions": "output_dimension"}
_COHERE_WORDS = (("input[", "texts["), ("'dimensions'", "'output_dimension'"),
                 ('send "truncate": true', 'send "truncate": "END" or "START"'),
                 ('send "long_input": "truncate"', 'leave out "long_input" to cut it'))
