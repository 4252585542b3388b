"""Native bulk jobs: POST/GET /v1/jobs, GET/DELETE /v1/jobs/{id}, cancel, and the streamed result."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request, stream_with_context

from embedserve import defaults
from embedserve.errors import InvalidRequest

from api.admission import admit
from api.context import owner, queued_inputs_cap, require_key, resolve_model, services
from api.bulk.files import find_file
from api.bulk.listing import list_page
from api.bulk.jobs import find_job, job_object, submit_file_job, submit_job
from api.bulk.result_formats import STREAMS, check_available, check_fits, pick_format
from api.validation.embeddings import (EmbeddingRequest, check_against_model, check_token_ids_accepted, parse_embedding_request,
                            parse_job_request, parse_json_body)

bp = Blueprint("jobs", __name__)


@bp.before_request
def _job_limits() -> None:
    request.max_content_length = services().settings.max_job_body_bytes
    require_key()


def create_job_response() -> Response:
    """Validate an embeddings body with the job limits, store and enqueue it: 202 + Location."""
    svc = services()
    body = parse_json_body(request.get_data(), request.content_type)
    if request.path == "/v1/jobs":
        file_id, req = parse_job_request(body, max_inputs=svc.settings.max_job_inputs)
        if file_id is not None:
            return _create_file_job(file_id, req)
    else:  # POST /v1/embeddings with Prefer: respond-async: the embeddings body, with the job limits
        req = parse_embedding_request(body, max_inputs=svc.settings.max_job_inputs)
    check_token_ids_accepted(req, svc.settings.accept_token_ids)
    served = resolve_model(req.model)
    check_against_model(req, served.card)
    with admit(0, g.identity):  # a job is a request like any other for the key's requests-per-minute
        job = submit_job(svc.scheduler, svc.job_data, svc.settings, req, served.card.name, owner(),
                         queued_inputs_cap())
    return _accepted(job)


def _create_file_job(file_id: str, req: EmbeddingRequest) -> Response:
    """A job over an uploaded user_data file: the inputs are streamed from the job store into chunks."""
    svc = services()
    record = find_file(svc.redis, file_id, owner())
    if record["purpose"] != "user_data":
        raise InvalidRequest(f"File '{file_id}' has purpose {record['purpose']!r}; a job's input file is "
                             f"uploaded with purpose 'user_data'.", param="input_file_id")
    served = resolve_model(req.model)
    check_against_model(req, served.card)
    with admit(0, g.identity):
        job = submit_file_job(svc.scheduler, svc.job_data, svc.settings, req, served.card.name, owner(),
                              queued_inputs_cap(), record)
    return _accepted(job)


def _accepted(job) -> Response:
    svc = services()
    response = jsonify(job_object(svc.jobs, job))
    response.status_code = 202
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return response


@bp.post("/v1/jobs")
def create_job() -> Response:
    """Submit a bulk embedding job."""
    return create_job_response()


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
