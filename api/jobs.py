"""Bulk jobs on the API side: cut a validated request into chunks, store them, enqueue them.

The inputs go to Redis under job-scoped keys first, the job record last, and the chunk
messages (carrying only job id and chunk number) after that: a submission that fails half-way
leaves no job behind, only input keys that are removed (or expire with the job TTL).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from embedserve import defaults
from embedserve.errors import NotFound
from embedserve.jobs import ChunkSpec, Job, JobStatus, JobStore, new_id
from embedserve.protocol import JOB_CHUNK_TASK, bulk_queue
from embedserve.publish import TaskPublisher
from embedserve.settings import Settings

from api.validation import EmbeddingRequest

JOB_PREFIX = "job_"


def input_weight(item: object) -> int:
    """Rough cost of one input for chunking: characters, or 4 per token id."""
    return len(item) * (4 if isinstance(item, list) else 1)


def chunk_bounds(inputs: list, max_inputs: int = defaults.JOB_CHUNK_INPUTS,
                 max_chars: int = defaults.JOB_CHUNK_CHARS) -> Iterator[tuple[int, int]]:
    """(start, end) slices of `inputs`, each within the chunk's input and character budget."""
    start, weight = 0, 0
    for i, item in enumerate(inputs):
        cost = input_weight(item)
        if i > start and (i - start >= max_inputs or weight + cost > max_chars):
            yield start, i
            start, weight = i, 0
        weight += cost
    if start < len(inputs):
        yield start, len(inputs)


def params_of(req: EmbeddingRequest) -> dict:
    """The request fields a worker needs for every chunk."""
    return {"input_type": req.input_type, "instruction": req.instruction, "truncate": req.truncate,
            "dimensions": req.dimensions}


# Chunk messages pushed per Redis round trip when a job is enqueued (bounds one script call's size).
ENQUEUE_BATCH = 1000


def enqueue(publisher: TaskPublisher, job_id: str, chunks: list[tuple[int, str]]) -> None:
    """Send one message per (chunk, model) to the model's bulk queue, many per round trip."""
    by_queue: dict[str, list[str]] = {}
    for index, model in chunks:
        queue = bulk_queue(model)
        by_queue.setdefault(queue, []).append(publisher.message(JOB_CHUNK_TASK, [job_id, index], queue))
    for queue, messages in by_queue.items():
        for start in range(0, len(messages), ENQUEUE_BATCH):
            publisher.publish(queue, messages[start:start + ENQUEUE_BATCH])


def submit_job(store: JobStore, publisher: TaskPublisher, settings: Settings, req: EmbeddingRequest, model: str,
               owner: str) -> Job:
    """Store and enqueue a native job for `req` on `model`; returns the queued job."""
    job_id = new_id(JOB_PREFIX)
    now = int(time.time())
    params = params_of(req)
    specs = (ChunkSpec(model=model, items=list(range(start, end)), counts=[1] * (end - start),
                       inputs=req.inputs[start:end], params=params) for start, end in chunk_bounds(req.inputs))
    count = store.put_chunks(job_id, specs, settings.job_ttl)
    job = Job(id=job_id, owner=owner, kind="job", model=model, status=JobStatus.QUEUED, created_at=now,
              total=len(req.inputs), chunks=count, encoding_format=req.encoding_format,
              expires_at=now + settings.job_ttl)
    try:
        store.create(job, settings.job_ttl)
    except BaseException:
        store.discard_chunks(job_id, count)
        raise
    enqueue(publisher, job_id, [(i, model) for i in range(count)])
    return job


def find_job(store: JobStore, job_id: str, owner: str) -> Job:
    """The caller's job, or the same 404 for unknown, expired, deleted and someone else's."""
    job = store.get(job_id, owner) if job_id.startswith(JOB_PREFIX) else None
    if job is None or job.kind != "job":
        raise NotFound(f"No job with id '{job_id}'.", param="job_id")
    return job


def job_object(store: JobStore, job: Job) -> dict:
    """The job as the API shows it."""
    body = {
        "id": job.id, "object": "embedding.job", "model": job.model, "status": job.status.value,
        "created_at": job.created_at, "started_at": job.started_at, "completed_at": job.completed_at,
        "cancelled_at": job.cancelled_at, "expires_at": job.expires_at, "encoding_format": job.encoding_format,
        "request_counts": {"total": job.total, "completed": job.completed, "failed": job.failed},
    }
    if job.failed:
        body["errors"] = {"object": "list", "data": store.error_sample(job.id)}
    return body
