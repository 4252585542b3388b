"""What the routes share, built once by the app factory and kept on `app.extensions`."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app, g, request

from embedserve.errors import InvalidRequest, NotFound
from embedserve.jobs.data import JobData
from embedserve.jobs.records import JobRecords
from embedserve.fleet.liveness import Liveness
from embedserve.publish import TaskPublisher
from embedserve.jobs.scheduler import Scheduler
from embedserve.fleet.registry import ModelKind, Registry, ServedModel
from embedserve.settings import Settings

from api.auth import KeyChecker
from api.dispatch import Dispatcher

EXTENSION = "embedserve"


@dataclass
class Services:
    """Connections and helpers for one app instance (one per server process)."""

    settings: Settings
    redis: redis.Redis
    publisher: TaskPublisher
    registry: Registry
    keys: KeyChecker
    dispatcher: Dispatcher
    jobs: JobRecords
    job_data: JobData
    scheduler: Scheduler
    liveness: Liveness


def services() -> Services:
    """The current app's services."""
    return current_app.extensions[EXTENSION]


def require_key() -> None:
    """`before_request` hook for authenticated blueprints: sets g.key_id and g.identity or raises 401."""
    g.identity = services().keys.identify(request.headers.get("Authorization"))
    g.key_id = g.identity.digest


def owner() -> str:
    """The caller's identity for ownership of jobs, files and batches: its key's digest, in hex."""
    return g.key_id.hex()


def queued_inputs_cap() -> int:
    """The caller's cap on inputs of queued and running jobs: its managed key's, else the static keys' (0 = none)."""
    cap = getattr(g.identity, "max_queued_inputs", None)
    return services().settings.max_queued_inputs_per_key if cap is None else cap


def resolve_model(name: str | None, kind: ModelKind | None = ModelKind.EMBEDDING) -> ServedModel:
    """The served model of `kind` (None: of any kind, as /tokenize takes) for a request's `model`.

    A request may leave `model` out when exactly one model of `kind` (any kind: embedding) is live,
    or else exactly one is known (catalogued or declared). A model with no live worker is still
    served: its work waits.
    """
    registry = services().registry
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
