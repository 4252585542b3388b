"""GET /v1/models and /v1/models/{id}: OpenAI's model list, showing every known model and its live workers."""

from __future__ import annotations

from flask import Blueprint, jsonify

from api.context import require_key, services
from api.validation.models import resolve_model
from embedserve.fleet.registry import ModelKind, ServedModel

bp = Blueprint("models", __name__)
bp.before_request(require_key)


def model_object(served: ServedModel) -> dict:
    """One OpenAI model object, with our extras (dimensions, max tokens, aliases, live workers).

    A model declared (EMBED_MODELS) but not yet announced by a worker shows 0 dimensions and 0 max tokens: unknown.
    """
    card = served.card
    model = {"id": card.name, "object": "model", "created": card.created, "owned_by": "embedserve",
             "kind": card.kind, "dimensions": card.dim, "max_input_tokens": card.max_length,
             "aliases": list(card.aliases), "workers": served.live_workers}
    if card.kind == ModelKind.RERANK:
        del model["dimensions"]  # a reranker returns scores, not vectors
    return model


@bp.get("/v1/models")
def list_models():
    """Every catalogued or declared model, with its live workers (maybe 0: its work waits for one).

    Read afresh (not from the registry's one-second cache), so a model a worker just announced is listed.
    """
    models = services().registry.models(fresh=True)
    return jsonify({"object": "list", "data": [model_object(m) for m in models]})


@bp.get("/v1/models/<path:model_id>")
def get_model(model_id: str):
    """One model by served name or alias."""
    return jsonify(model_object(resolve_model(services().registry, model_id, kind=None)))
