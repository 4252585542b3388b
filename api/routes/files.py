"""OpenAI Files: upload (multipart, purpose=batch JSONL or user_data .jsonl/.txt), list, retrieve, content, delete."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, stream_with_context

from embedserve import redis_keys
from embedserve.errors import InvalidRequest, NotFound

from api.batch_output import output_lines
from api.context import list_params, owner, require_key, services
from api.files import delete_file, file_object, find_file, receive_upload, uploaded_content

bp = Blueprint("files", __name__)
# Room for the multipart envelope (boundaries, headers, the purpose field) around the file.
MULTIPART_SLACK_BYTES = 1024 * 1024


@bp.before_request
def _file_limits() -> None:
    request.max_content_length = services().settings.max_file_bytes + MULTIPART_SLACK_BYTES
    require_key()


@bp.post("/v1/files")
def upload_file() -> Response:
    """Store a JSONL batch input file."""
    if request.mimetype != "multipart/form-data":
        raise InvalidRequest("Upload files as multipart/form-data with fields 'file' and 'purpose'.", param="file")
    svc = services()
    # request.stream, not request.files: werkzeug would spool the file to a temporary file first.
    record = receive_upload(svc.redis, svc.job_data.store, svc.settings, owner(), request.stream,
                            request.content_type)
    return jsonify(file_object(record))


@bp.get("/v1/files")
def list_files() -> Response:
    """The caller's files, newest first (`limit`, `after`, `purpose`)."""
    svc = services()
    limit, after = list_params()
    purpose = request.args.get("purpose")
    ids, has_more = svc.jobs.list(owner(), "files", limit, after)
    data = []
    for file_id in ids:
        try:
            record = _with_size(find_file(svc.redis, file_id, owner()))
        except NotFound:  # expired since it was listed
            svc.jobs.forget(owner(), "files", file_id)
            continue
        if purpose is None or record["purpose"] == purpose:
            data.append(file_object(record))
    return jsonify({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None, "has_more": has_more})


@bp.get("/v1/files/<file_id>")
def get_file(file_id: str) -> Response:
    """One file's record."""
    return jsonify(file_object(_with_size(find_file(services().redis, file_id, owner()))))


@bp.get("/v1/files/<file_id>/content")
def file_content(file_id: str) -> Response:
    """The file's bytes, streamed (a batch's output is generated from its results as it streams)."""
    record = find_file(services().redis, file_id, owner())
    return Response(stream_with_context(_content(record)), mimetype="application/jsonl")


@bp.delete("/v1/files/<file_id>")
def remove_file(file_id: str) -> Response:
    """Delete the file."""
    svc = services()
    record = find_file(svc.redis, file_id, owner())
    delete_file(svc.redis, svc.job_data.store, record)
    return jsonify({"id": record["id"], "object": "file", "deleted": True})


def _content(record: dict):
    svc = services()
    if "job_id" not in record:
        return uploaded_content(svc.job_data.store, record["id"])
    job = svc.jobs.get(record["job_id"])
    return output_lines(svc.job_data, job, record["batch_id"], record["role"]) if job else iter(())


def _with_size(record: dict) -> dict:
    """An output file's size is known once it was generated; do that once and keep the number."""
    if int(record["bytes"]) >= 0:
        return record
    size = sum(len(block) for block in _content(record))
    services().redis.hset(redis_keys.file(record["id"]), "bytes", size)
    return {**record, "bytes": size}
