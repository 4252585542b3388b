"""GET /health (the process is up) and GET /ready (it can serve: Redis and a worker per model)."""

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
    """Readiness: Redis answers and every known model has a live worker."""
    try:
        services().redis.ping()
        models = services().registry.models()
    except redis.RedisError:
        return jsonify({"status": "unavailable", "redis": "unreachable", "models": {}}), 503
    workers = {m.card.name: m.live_workers for m in models}
    is_ready = bool(workers) and all(workers.values())
    body = {"status": "ready" if is_ready else "unavailable", "redis": "ok", "models": workers}
    response = jsonify(body)
    response.status_code = 200 if is_ready else 503
    if not is_ready:
        response.headers["Retry-After"] = "5"
    return response
