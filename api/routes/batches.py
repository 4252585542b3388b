"""OpenAI Batches: create, retrieve, cancel, list; backed by the job machinery."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from api.admission import admit
from api.bulk.batches import batch_object, create_batch, find_batch
from api.bulk.listing import list_page
from api.context import json_body, owner, queued_inputs_cap, require_key, services
from embedserve.errors import NotFound

bp = Blueprint("batches", __name__)
bp.before_request(require_key)


@bp.post("/v1/batches")
def create() -> Response:
    """Validate the input file and start the batch."""
    svc = services()
    body = json_body()
    with admit(0, g.identity):  # counts against the key's requests-per-minute like any request
        batch_id = create_batch(svc.jobs, svc.scheduler, svc.job_data, svc.registry, svc.settings, owner(), body,
                                queued_inputs_cap(), webhook=g.identity.webhook)
    return jsonify(batch_object(svc.jobs, find_batch(svc.jobs, batch_id, owner())))


@bp.get("/v1/batches/<batch_id>")
def retrieve(batch_id: str) -> Response:
    """One batch, with its progress."""
    svc = services()
    return jsonify(batch_object(svc.jobs, find_batch(svc.jobs, batch_id, owner())))


@bp.post("/v1/batches/<batch_id>/cancel")
def cancel(batch_id: str) -> Response:
    """Stop the batch's remaining requests; finished ones stay in its output file."""
    svc = services()
    batch = find_batch(svc.jobs, batch_id, owner())
    if svc.jobs.get(batch.get("job_id", "")) is not None and batch.get("status") != "failed":
        svc.jobs.cancel(batch["job_id"])
    return jsonify(batch_object(svc.jobs, batch))


@bp.get("/v1/batches")
def list_batches() -> Response:
    """The caller's batches, newest first (`limit`, `after`)."""
    svc = services()

    def load(batch_id: str) -> dict | None:
        try:
            return batch_object(svc.jobs, find_batch(svc.jobs, batch_id, owner()))
        except NotFound:
            return None
    return list_page("batches", load)
