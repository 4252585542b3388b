"""POST /v1/embeddings: the OpenAI embeddings endpoint."""

from __future__ import annotations

from flask import Blueprint, Response, g, request


from api.admission import admit, estimate_tokens
from api.context import require_key, services
from api.routes.jobs import create_job_response
from api.responses import embedding_list
from api.validation.models import resolve_model
from api.validation.embeddings import check_against_model, check_token_ids_accepted, parse_embedding_request, parse_json_body

bp = Blueprint("embeddings", __name__)


def wants_async() -> bool:
    """RFC 7240 `Prefer: respond-async`: the caller asks for a job instead of waiting."""
    prefs = ",".join(request.headers.getlist("Prefer")).lower()
    return any(p.split(";")[0].strip() == "respond-async" for p in prefs.split(","))


@bp.before_request
def _limits_and_key() -> None:
    if wants_async():  # a job: its own body limit
        request.max_content_length = services().settings.max_job_body_bytes
    require_key()


@bp.post("/v1/embeddings")
@bp.post("/embeddings")
def create_embeddings() -> Response:
    """Validate, route to the model's workers, answer in OpenAI's format (or 202 + a job when async)."""
    if wants_async():
        return create_job_response()
    svc = services()
    req = parse_embedding_request(parse_json_body(request.get_data(), request.content_type))
    check_token_ids_accepted(req, svc.settings.accept_token_ids)
    served = resolve_model(svc.registry, req.model)
    check_against_model(req, served.card)
    estimate = estimate_tokens(req, served.card.max_length)
    with admit(estimate, g.identity) as ticket:
        result = svc.dispatcher.embed(req, served, request_id=g.get("request_id"))
        ticket.record_usage(result.tokens)
    body = embedding_list(result, served.card.name, req.encoding_format, req.embedding_types[0])
    return Response(body, mimetype="application/json")
