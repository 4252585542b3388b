"""Which served model a request means: the one rule for every route, job and batch line.

A request may leave `model` out when exactly one model of the kind it needs is live, or else exactly
one is known (catalogued or declared). A model with no live worker is still served: its work waits.
"""

from __future__ import annotations

from embedserve.errors import InvalidRequest, NotFound
from embedserve.fleet.registry import ModelKind, Registry, ServedModel


def resolve_model(registry: Registry, name: str | None, kind: ModelKind | None = ModelKind.EMBEDDING) -> ServedModel:
    """The served model of `kind` (None: of any kind, as /tokenize and GET /v1/models/{id} take) named `name`,
    or the one a request without a name means (of `kind`, any kind: embedding)."""
    if name is None:
        only = registry.only(kind or ModelKind.EMBEDDING)
        if only is not None:
            return only
        # Its own code: whether `model` may be left out depends on what is served, not on the body.
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="model_required")
    served = registry.lookup(name)
    if served is None:
        raise NotFound(f"The model '{name}' does not exist or is not served here; see GET /v1/models.",
                       param="model", code="model_not_found")
    if kind is not None and served.card.kind != kind:
        what = "a reranker; send it to /v1/rerank" if served.card.kind == ModelKind.RERANK else \
            "an embedding model; send it to /v1/embeddings"
        raise InvalidRequest(f"The model '{name}' is {what}.", param="model", code="wrong_model_kind")
    return served
