"""POST /v1/embeddings: the OpenAI embeddings endpoint."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from embedserve.protocol import interactive_queue

from api.admission import admit, estimate_tokens
from api.context import require_key, resolve_model, services
from api.responses import embedding_list
from api.validation import check_against_model, parse_embedding_request, parse_json_body

bp = Blueprint("embeddings", __name__)
bp.before_request(require_key)


@bp.post("/v1/embeddings")
@bp.post("/embeddings")
def create_embeddings() -> Response:
    """Validate, route to the model's workers, answer in OpenAI's format."""
    req = parse_embedding_request(parse_json_body(request.get_data(), request.content_type))
    served = resolve_model(req.model)
    check_against_model(req, served.card)
    svc = services()
    estimate = estimate_tokens(req, served.card.max_length)
    queue = interactive_queue(served.card.name)
    with admit(estimate, served, queue, g.identity, svc.redis, svc.settings.max_queue) as ticket:
        result = svc.dispatcher.embed(req, served, request_id=g.get("request_id"))
        ticket.settle(result.tokens)
    return Response(embedding_list(result, served.card.name, req.encoding_format), mimetype="application/json")
