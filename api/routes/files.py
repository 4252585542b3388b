"""OpenAI Files: upload (multipart, purpose=batch JSONL or user_data .jsonl/.txt), list, retrieve, content, delete."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, stream_with_context

from api.bulk.batch_output import output_lines, output_size, roles
from api.bulk.files import delete_file, file_object, find_file, receive_upload, uploaded_content
from api.bulk.listing import list_page
from api.context import owner, require_key, services
from embedserve.errors import InvalidRequest, NotFound

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
    purpose = request.args.get("purpose")

    def load(file_id: str) -> dict | None:
        try:
            return _shown(find_file(svc.redis, file_id, owner()))
        except NotFound:
            return None
    # A batch's output file listed before its batch ended is not shown yet (and not dropped).
    return list_page("files", load, keep=lambda record: record.get("shown", True)
                     and (purpose is None or record["purpose"] == purpose), show=file_object)


@bp.get("/v1/files/<file_id>")
def get_file(file_id: str) -> Response:
    """One file's record."""
    return jsonify(file_object(_find(file_id)))


@bp.get("/v1/files/<file_id>/content")
def file_content(file_id: str) -> Response:
    """The file's bytes, streamed (a batch's output is generated from its results as it streams)."""
    record = _find(file_id)
    return Response(stream_with_context(_content(record)), mimetype="application/jsonl")


@bp.delete("/v1/files/<file_id>")
def remove_file(file_id: str) -> Response:
    """Delete the file."""
    svc = services()
    record = _find(file_id)
    delete_file(svc.redis, svc.job_data.store, record)
    return jsonify({"id": record["id"], "object": "file", "deleted": True})


def _find(file_id: str) -> dict:
    """The caller's file as shown, or a 404 (a batch's output file is not there before its batch ends)."""
    record = _shown(find_file(services().redis, file_id, owner()))
    if not record.get("shown", True):
        raise NotFound(f"No file with id '{file_id}'.", param="file_id")
    return record


def _shown(record: dict) -> dict:
    """An uploaded file as stored; a batch's output file with `shown` (has its batch ended with lines
    for it?), its size once it is, and the job's end as its creation time."""
    if "job_id" not in record:
        return record
    svc = services()
    job = svc.jobs.get(record["job_id"])
    if record["role"] not in roles(job):
        return {**record, "shown": False}
    size = output_size(svc.job_data, job, record["batch_id"], record["role"])
    return {**record, "bytes": size, "created_at": job.completed_at or record["created_at"]}


def _content(record: dict):
    svc = services()
    if "job_id" not in record:
        return uploaded_content(svc.job_data.store, record["id"])
    return output_lines(svc.job_data, svc.jobs.get(record["job_id"]), record["batch_id"], record["role"])
