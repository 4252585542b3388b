"""Turn a /v1/rerank body into a checked RerankRequest, or raise InvalidRequest naming the field.

Accepts the shapes Cohere's (v1 and v2) and Jina's rerank clients send: documents as strings or
`{"text": ...}` objects, `top_n`, `return_documents`. Cohere's `rank_fields`,
`max_chunks_per_doc` and `max_tokens_per_doc` are accepted and ignored: documents are scored
whole, and one over the model's maximum is a 400 unless `truncate` is true.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedserve import defaults
from embedserve.errors import InvalidRequest

from api.validation import _encodable, _optional_bool, _optional_str


@dataclass(frozen=True)
class RerankRequest:
    """A validated /v1/rerank body (the model name is not yet resolved)."""

    query: str
    documents: list[str]
    model: str | None = None
    top_n: int | None = None
    return_documents: bool = False
    instruction: str | None = None
    truncate: bool = False


def parse_rerank_request(body: object, *, max_documents: int = defaults.MAX_RERANK_DOCUMENTS) -> RerankRequest:
    """Check every field of a rerank body."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    return RerankRequest(
        query=_query(body),
        documents=_documents(body, max_documents),
        model=model,
        top_n=_top_n(body.get("top_n")),
        return_documents=_optional_bool(body, "return_documents"),
        instruction=_optional_str(body, "instruction"),
        truncate=_optional_bool(body, "truncate"),
    )


def ranked(scores: list[float], top_n: int | None) -> list[int]:
    """Document indexes by score, highest first (ties keep input order), cut to `top_n`."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return order if top_n is None else order[:top_n]


def _query(body: dict) -> str:
    if "query" not in body:
        raise InvalidRequest("Missing required parameter: 'query'.", param="query")
    query = body["query"]
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("'query' must be a non-empty string.", param="query")
    if not _encodable(query):
        raise InvalidRequest("'query' contains an unpaired surrogate (invalid Unicode).", param="query")
    return query


def _documents(body: dict, max_documents: int) -> list[str]:
    if "documents" not in body:
        raise InvalidRequest("Missing required parameter: 'documents'.", param="documents")
    documents = body["documents"]
    if not isinstance(documents, list) or not documents:
        raise InvalidRequest("'documents' must be a non-empty array of strings or {\"text\": ...} objects.",
                             param="documents")
    if len(documents) > max_documents:
        raise InvalidRequest(f"'documents' has {len(documents)} items; at most {max_documents} are allowed "
                             "per request.", param="documents", code="too_many_documents")
    return [_document_text(doc, i) for i, doc in enumerate(documents)]


def _document_text(doc: object, index: int) -> str:
    text = doc.get("text") if isinstance(doc, dict) else doc
    if not isinstance(text, str):
        raise InvalidRequest(f"documents[{index}] must be a string or an object with a string 'text'.",
                             param="documents")
    if not _encodable(text):
        raise InvalidRequest(f"documents[{index}] contains an unpaired surrogate (invalid Unicode).",
                             param="documents")
    return text


def _top_n(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise InvalidRequest(f"'top_n' must be a positive integer, got {value!r}.", param="top_n")
    return value
