"""GET /health (the process is up) and GET /ready (it can serve: Redis answers, the catalogue reads)."""

from __future__ import annotations

import redis
from flask import Blueprint, jsonify

from api.context import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """Liveness: answers while the process runs, touches nothing else."""
    return jsonify({"status": "ok"})


@bp.get("/ready")
def ready():
    """Readiness: Redis answers and the model catalogue is readable.

    The body counts each known model's live workers; a model with none (scaled to zero, retired,
    or declared before its first worker) never makes the API unready: its work waits for a worker.
    """
    try:
        services().redis.ping()
        models = services().registry.models(fresh=True)
    except redis.RedisError:
        response = jsonify({"status": "unavailable", "redis": "unreachable", "models": {}})
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"status": "ready", "redis": "ok", "models": {m.card.name: m.live_workers for m in models}})
