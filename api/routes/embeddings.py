"""POST /v1/embeddings: the OpenAI embeddings endpoint."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from api.admission import admit, estimate_tokens
from api.bulk.jobs import job_accepted, queue_job
from api.context import json_body, owner, queued_inputs_cap, require_key, services
from api.responses import embedding_list
from api.validation.embeddings import check_for_model, parse_embedding_request
from embedserve.cache_scope import scope_of

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
    svc = services()
    if wants_async():  # the embeddings body, with the job limits
        req = parse_embedding_request(json_body(), max_inputs=svc.settings.max_job_inputs)
        return job_accepted(svc.jobs, queue_job(svc, g.identity, owner(), queued_inputs_cap(), req))
    req = parse_embedding_request(json_body())
    served = check_for_model(req, svc.registry, accept_token_ids=svc.settings.accept_token_ids)
    estimate = estimate_tokens(req, served.card.max_length)
    with admit(estimate, g.identity) as ticket:
        result = svc.dispatcher.embed(req, served, request_id=g.get("request_id"), cache_scope=scope_of(owner()))
        ticket.record_usage(result.tokens)
    body = embedding_list(result, served.card.name, req.encoding_format, req.embedding_types[0])
    return Response(body, mimetype="application/json")
