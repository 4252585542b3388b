"""POST /tokenize and /detokenize: the served model's tokenizer, in vLLM's shapes.

They name a model, so they route as embeddings do: the same keys, the same rate limits (a request
counts against the key's requests per minute; tokenizing charges no tokens, it runs no model), and
one task on the model's queue, answered by a worker with its tokenizer (worker/tokenize_service.py).
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, g

from api.admission import admit
from api.context import json_body, require_key, services
from api.contract.tokenize import DetokenizeBody, TokenizeBody
from api.validation.models import resolve_model
from api.validation.tokenize import check_token_ids
from embedserve.fleet.registry import ServedModel

bp = Blueprint("tokenize", __name__)
bp.before_request(require_key)


@bp.post("/tokenize")
def tokenize() -> Response:
    """A prompt's token ids, their count and the model's maximum input length."""
    body = TokenizeBody.check(json_body())
    served = resolve_model(services().registry, body.model, kind=None)
    return _answer(served, prompt=body.prompt, add_special_tokens=body.add_special_tokens,
                   return_token_strs=body.return_token_strs)


@bp.post("/detokenize")
def detokenize() -> Response:
    """The text of token ids."""
    body = DetokenizeBody.check(json_body())
    served = resolve_model(services().registry, body.model, kind=None)
    check_token_ids(body.tokens, served.card)
    return _answer(served, tokens=list(body.tokens))


def _answer(served: ServedModel, **fields) -> Response:
    """Admit the request, send it to the model's workers, answer with the worker's reply as it is."""
    with admit(0, g.identity):
        answer = services().dispatcher.tokenize(served, request_id=g.get("request_id"), **fields)
    return Response(json.dumps(answer), mimetype="application/json")
