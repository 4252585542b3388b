"""A batch's output and error files, generated line by line from its job's chunk outputs.

Lines are OpenAI's: `{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}`. Ids are derived from the batch id and line number, so every download of a file
yields the same bytes (and the size computed once stays true).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from embedserve.jobs.data import JobData
from embedserve.jobs.records import Job, JobStatus
from embedserve.vector_types import row_encoder

# Sizes of generated files already counted by this process: (batch id, role) -> bytes. A finished
# job's output never changes (ids are derived), so the count is kept here instead of being
# written back to Redis from a GET; each API process counts a file at most once.
_SIZES: dict[tuple[str, str], int] = {}
_SIZES_MAX = 4096


def roles(job: Job | None) -> tuple[str, ...]:
    """The files an ended batch job has: "output" when a line succeeded, "error" when one failed."""
    if job is None or not job.status.finished:
        return ()
    return tuple(role for role, wanted in (("output", job.completed > 0), ("error", job.completed < job.total))
                 if wanted)


def output_size(store: JobData, job: Job, batch_id: str, role: str) -> int:
    """Bytes of a finished batch's `role` file, counted by generating it once per process."""
    key = (batch_id, role)
    if key not in _SIZES:
        if len(_SIZES) >= _SIZES_MAX:
            _SIZES.pop(next(iter(_SIZES)))
        _SIZES[key] = sum(len(line) for line in output_lines(store, job, batch_id, role))
    return _SIZES[key]


def _hex(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:32]


def _line(batch_id: str, line: int, custom_id: str, status: int | None, body: dict | None,
          error: dict | None) -> bytes:
    response = None if status is None else {"status_code": status, "request_id": _hex("req", batch_id, line),
                                            "body": body}
    return json.dumps({"id": f"batch_req_{_hex(batch_id, line)}", "custom_id": custom_id, "response": response,
                       "error": error}).encode() + b"\n"


def _embeddings_body(vectors: bytes, rows: int, width: int, tokens: int, model: str, encoding: str,
                     embedding_type: str, windows: list | None = None) -> dict:
    """A line's /v1/embeddings response body; `windows` (long_input: windows): each row's windows."""
    encode = row_encoder(encoding, embedding_type)
    data = [{"object": "embedding", "index": i, "embedding": encode(vectors[i * width:(i + 1) * width])}
            for i in range(rows)]
    for item, row in zip(data, windows or []):
        item["windows"] = [{"embedding": encode(w["embedding"]), "text_start": w["text_start"],
                            "text_end": w["text_end"], "tokens": w["tokens"]} for w in row]
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
            size = rows * output.row_width
            if err is None and role == "output":
                first = offset // output.row_width if output.row_width else 0
                windows = output.windows[first:first + rows] if output.windows is not None else None
                body = _embeddings_body(output.vectors[offset:offset + size], rows, output.row_width, tokens,
                                        spec.model, encoding, output.embedding_type, windows)
                yield _line(batch_id, line, custom_id, 200, body, None)
            elif err is not None and role == "error":
                yield _line(batch_id, line, custom_id, err["status"], {"error": err["error"]}, None)
            offset += size
