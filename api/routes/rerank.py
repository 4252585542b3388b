"""POST /v1/rerank: score documents against a query (Cohere/Jina-compatible).

Also at /rerank, and at /v2/rerank where Cohere's v2 client (`cohere.ClientV2`) posts: its
request is v1's minus `return_documents`, and its response reads a subset of ours.
"""

from __future__ import annotations

from flask import Blueprint, Response, g

from api.admission import admit, estimate_rerank_tokens
from api.context import json_body, require_key, services
from api.responses import rerank_response
from api.validation.models import resolve_model
from api.validation.rerank import parse_rerank_request
from embedserve.fleet.registry import ModelKind

bp = Blueprint("rerank", __name__)
bp.before_request(require_key)


@bp.post("/v1/rerank")
@bp.post("/v2/rerank")
@bp.post("/rerank")
def rerank() -> Response:
    """Validate, score every document on the reranker's workers, answer sorted by relevance."""
    req = parse_rerank_request(json_body())
    svc = services()
    served = resolve_model(svc.registry, req.model, ModelKind.RERANK)
    estimate = estimate_rerank_tokens(req, served.card.max_length)
    with admit(estimate, g.identity) as ticket:
        result = svc.dispatcher.rerank(req, served, request_id=g.get("request_id"))
        ticket.record_usage(result.tokens)
    return Response(rerank_response(result, req, served.card.name), mimetype="application/json")
