"""Native bulk jobs: POST/GET /v1/jobs, GET/DELETE /v1/jobs/{id}, cancel, and the streamed result."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request, stream_with_context

from api.bulk.files import find_input_file
from api.bulk.jobs import find_job, job_accepted, job_object, queue_job
from api.bulk.listing import list_page
from api.bulk.result_formats import STREAMS, check_available, check_fits, pick_format
from api.context import json_body, owner, queued_inputs_cap, require_key, services
from api.validation.embeddings import parse_job_request
from embedserve import defaults

bp = Blueprint("jobs", __name__)


@bp.before_request
def _job_limits() -> None:
    request.max_content_length = services().settings.max_job_body_bytes
    require_key()


@bp.post("/v1/jobs")
def create_job() -> Response:
    """Submit a bulk embedding job: over `input`, or over an uploaded user_data file (`input_file_id`)."""
    svc = services()
    file_id, req = parse_job_request(json_body(), max_inputs=svc.settings.max_job_inputs)
    record = None if file_id is None else find_input_file(svc.redis, file_id, owner(), "user_data")
    return job_accepted(svc.jobs, queue_job(svc, g.identity, owner(), queued_inputs_cap(), req, record))


@bp.get("/v1/jobs")
def list_jobs() -> Response:
    """The caller's jobs, newest first (`limit`, `after`)."""
    svc = services()

    def load(job_id: str) -> dict | None:
        job = svc.jobs.get(job_id, owner())
        return None if job is None else job_object(svc.jobs, job)
    return list_page("jobs", load)


@bp.get("/v1/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    """One job, with its progress."""
    svc = services()
    return jsonify(job_object(svc.jobs, find_job(svc.jobs, job_id, owner())))


@bp.post("/v1/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    """Stop the job's remaining chunks; finished ones stay downloadable."""
    svc = services()
    job = find_job(svc.jobs, job_id, owner())
    svc.jobs.cancel(job.id)
    return jsonify(job_object(svc.jobs, find_job(svc.jobs, job_id, owner())))


@bp.delete("/v1/jobs/<job_id>")
def delete_job(job_id: str) -> Response:
    """Drop the job and all its data."""
    svc = services()
    job = find_job(svc.jobs, job_id, owner())
    svc.jobs.delete(job)
    svc.job_data.delete(job.id)
    return jsonify({"id": job.id, "object": "embedding.job.deleted", "deleted": True})


@bp.get("/v1/jobs/<job_id>/result")
def job_result(job_id: str) -> Response:
    """202 + the job while it runs; then the result, streamed, as JSON, ndjson, msgpack (one map or a
    framed stream) or Parquet."""
    svc = services()
    fmt = pick_format(request.headers.get("Accept"), request.accept_mimetypes)
    job = find_job(svc.jobs, job_id, owner())
    check_fits(job, fmt)  # before the first byte: a 200 cannot be taken back (the size is known once dim is)
    if not job.status.finished:
        response = jsonify(job_object(svc.jobs, job))
        response.status_code = 202
        response.headers["Retry-After"] = str(defaults.JOB_RETRY_AFTER_S)
        return response
    check_available(svc.job_data, job)
    return Response(stream_with_context(STREAMS[fmt](svc.job_data, job)), mimetype=fmt)
