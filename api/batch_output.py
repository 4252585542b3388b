"""A batch's output and error files, generated line by line from its job's chunk outputs.

Lines are OpenAI's: `{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}`. Ids are derived from the batch id and line number, so every download of a file
yields the same bytes (and the size computed once stays true).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

from embedserve.job_data import JobData
from embedserve.job_records import Job, JobStatus
from embedserve.protocol import floats


def _hex(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:32]


def _line(batch_id: str, line: int, custom_id: str, status: int | None, body: dict | None,
          error: dict | None) -> bytes:
    response = None if status is None else {"status_code": status, "request_id": _hex("req", batch_id, line),
                                            "body": body}
    return json.dumps({"id": f"batch_req_{_hex(batch_id, line)}", "custom_id": custom_id, "response": response,
                       "error": error}).encode() + b"\n"


def _embeddings_body(vectors: bytes, rows: int, dim: int, tokens: int, model: str, encoding: str) -> dict:
    width = dim * 4
    encode = (lambda row: base64.b64encode(row).decode("ascii")) if encoding == "base64" else floats
    data = [{"object": "embedding", "index": i, "embedding": encode(vectors[i * width:(i + 1) * width])}
            for i in range(rows)]
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def output_lines(store: JobData, job: Job, batch_id: str, role: str) -> Iterator[bytes]:
    """Lines of the batch's `role` file ("output": successes, "error": everything that failed)."""
    if role == "error":
        for entry in store.prefailed(job.id):
            yield _line(batch_id, entry["line"], entry["custom_id"], entry["status"], {"error": entry["error"]}, None)
    for chunk in range(job.chunks):
        spec = store.spec(job.id, chunk)
        if spec is None:
            continue
        output = store.output(job.id, chunk)
        if output is None:  # never ran: cancelled or expired
            if role == "error":
                code = "batch_expired" if job.status == JobStatus.EXPIRED else "batch_cancelled"
                message = "This request could not be executed before the batch " + \
                    ("expired." if code == "batch_expired" else "was cancelled.")
                for line, (custom_id, _) in zip(spec.items, spec.meta or []):
                    yield _line(batch_id, line, custom_id, None, None, {"code": code, "message": message})
            continue
        offset = 0
        for line, (custom_id, encoding), rows, tokens, err in zip(output.items, spec.meta or [], output.rows,
                                                                  output.tokens, output.errors):
            size = rows * output.dim * 4
            if err is None and role == "output":
                body = _embeddings_body(output.vectors[offset:offset + size], rows, output.dim, tokens, spec.model,
                                        encoding)
                yield _line(batch_id, line, custom_id, 200, body, None)
            elif err is not None and role == "error":
                yield _line(batch_id, line, custom_id, err["status"], {"error": err["error"]}, None)
            offset += size
