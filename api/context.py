"""What the routes share, built once by the app factory and kept on `app.extensions`."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app, g, request

from api import body_budget
from api.auth import KeyChecker
from api.dispatch import Dispatcher
from api.validation.embeddings import parse_json_body
from embedserve.fleet.liveness import Liveness
from embedserve.fleet.registry import Registry
from embedserve.jobs.data import JobData
from embedserve.jobs.records import JobRecords
from embedserve.jobs.scheduler import Scheduler
from embedserve.publish import TaskPublisher
from embedserve.settings import Settings

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


def json_body() -> object:
    """The request's body, decoded as JSON (strictly: see parse_json_body). A body over the sync limit
    first takes its share of the process's budget for large bodies (api/body_budget.py)."""
    settings = services().settings
    length, limit = request.content_length, request.max_content_length or settings.max_body_bytes
    if length is None or settings.max_body_bytes < length <= limit:  # over the limit: get_data answers 413
        body_budget.reserve(length if length is not None else limit)  # chunked: as large as the limit allows
    return parse_json_body(request.get_data(), request.content_type)
