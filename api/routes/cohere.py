"""POST /v2/embed: Cohere's v2 embed endpoint, where `cohere.ClientV2(base_url=...).embed` posts.

The mapping onto our embeddings is api/validation/cohere.py's, the response api/responses.py's. Errors are ours (OpenAI-shaped), with
the message also at the top level, where Cohere's own error bodies (`{"message": ...}`) keep it.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, g

from api.admission import admit, estimate_tokens
from api.context import json_body, owner, require_key, services
from api.responses import cohere_embed_response
from api.validation.cohere import cohere_error, parse_cohere_embed, within_model
from api.validation.embeddings import check_for_model
from embedserve.cache_scope import scope_of
from embedserve.errors import ServiceError

bp = Blueprint("cohere", __name__)
bp.before_request(require_key)


@bp.post("/v2/embed")
def embed() -> Response:
    """Validate, embed once on the model's workers, answer every asked type in Cohere's format."""
    embed = parse_cohere_embed(json_body())
    svc = services()
    try:  # the refusals from here on name our fields; cohere_error says them in Cohere's (`model` reads the same)
        served = check_for_model(embed.request, svc.registry, accept_token_ids=svc.settings.accept_token_ids)
        req = within_model(embed.request, served.card.max_length)
        with admit(estimate_tokens(req, served.card.max_length), g.identity) as ticket:
            result = svc.dispatcher.embed(req, served, request_id=g.get("request_id"), cache_scope=scope_of(owner()))
            ticket.record_usage(result.tokens)
    except ServiceError as exc:
        raise cohere_error(exc) from None
    return Response(cohere_embed_response(result, embed), mimetype="application/json")


@bp.after_request
def _top_level_message(response: Response) -> Response:
    """Every error from this route (auth, limits, the body, the workers) also carries `message` at the top."""
    if response.status_code >= 400 and response.mimetype == "application/json":
        body = json.loads(response.get_data())
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            response.set_data(json.dumps({**body, "message": body["error"].get("message")}))
    return response
