"""Turn a /v1/rerank body into a checked RerankRequest, or raise InvalidRequest naming the field.

What a body may hold is the contract's (api/contract/rerank.py); the request keeps what scoring needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.contract.rerank import rerank_body
from embedserve import defaults


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
    truncation_direction: str = "right"


def parse_rerank_request(body: object, *, max_documents: int = defaults.MAX_RERANK_DOCUMENTS) -> RerankRequest:
    """Check a rerank body against the contract."""
    checked = rerank_body(max_documents).check(body)
    return RerankRequest(query=checked.query, documents=checked.texts(), model=checked.model, top_n=checked.top_n,
                         return_documents=checked.return_documents, instruction=checked.instruction,
                         truncate=checked.truncate, truncation_direction=checked.truncation_direction.lower())
