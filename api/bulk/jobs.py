"""Bulk jobs on the API side: cut a validated request into chunks, store them, submit the job.

The inputs go to the job store first; then one atomic step in Redis checks the key's quota,
writes the record and puts the job in its model's rotation (embedserve/jobs/scheduler.py). A
submission that fails half-way leaves no job behind: the inputs written are removed, and if the
API itself dies first, the sweeper removes them (the submission was noted as pending).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from embedserve import defaults
from embedserve.errors import InvalidRequest, NotFound, RateLimited
from embedserve.jobs.data import JobData
from embedserve.jobs.records import Job, JobRecords, JobStatus, job_record
from embedserve.ids import new_id
from embedserve.jobs.chunks import ChunkParams, ChunkSpec
from embedserve.jobs.scheduler import QuotaExceeded, Scheduler
from embedserve.settings import Settings

from api.bulk.files import user_data_inputs
from api.validation.embeddings import EmbeddingRequest

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


def params_of(req: EmbeddingRequest) -> ChunkParams:
    """The request fields a worker needs for every chunk."""
    return ChunkParams(input_type=req.input_type, instruction=req.instruction, truncate=req.truncate,
                       dimensions=req.dimensions, truncation_direction=req.truncation_direction,
                       embedding_type=req.embedding_types[0])


# The error code of a submission over the key's cap of queued inputs.
QUEUE_LIMIT_EXCEEDED = "queue_limit_exceeded"
# Seconds a key over its bulk quota is told to wait: about when a chunk or two of its jobs finish.
QUOTA_RETRY_AFTER_S = 10


def check_quota(scheduler: Scheduler, owner: str, inputs: int, cap: int) -> None:
    """400 when `inputs` alone is over the cap (retrying cannot help), 429 when the key's queue is; else nothing."""
    if cap <= 0:
        return
    if inputs > cap:
        raise InvalidRequest(f"This job has {inputs} inputs, more than this key may have queued at once ({cap}, "
                             f"EMBED_MAX_QUEUED_INPUTS_PER_KEY); split it into smaller jobs.", param="input",
                             code=QUEUE_LIMIT_EXCEEDED)
    used = scheduler.queued_inputs(owner)
    if used + inputs > cap:
        raise over_quota(used, inputs, cap)


def over_quota(used: int, inputs: int, cap: int) -> RateLimited:
    return RateLimited(f"This key has {used} inputs in queued or running jobs; {inputs} more would pass its cap "
                       f"of {cap}. Retry when some finish.", code=QUEUE_LIMIT_EXCEEDED,
                       retry_after=QUOTA_RETRY_AFTER_S)


def submit(scheduler: Scheduler, data: JobData, job: Job, specs, *, cap: int, settings: Settings,
           listed: bool = True) -> Job:
    """Write a job's chunk inputs, then create it whole in one step; nothing is left if any step fails."""
    check_quota(scheduler, job.owner, job.total, cap)
    scheduler.note_pending(job.id)
    job.chunks = data.put_inputs(job.id, specs)
    try:
        scheduler.submit(job_record(job, defaults.JOB_ERROR_SAMPLE), cap=cap, listed=listed,
                         ttl=settings.job_ttl + settings.job_record_grace)
    except QuotaExceeded as over:  # another submission of the key won the race for the last room
        data.delete(job.id)
        raise over_quota(over.used, job.total, cap) from None
    except BaseException:
        data.delete(job.id)
        raise
    return job


def submit_job(scheduler: Scheduler, data: JobData, settings: Settings, req: EmbeddingRequest, model: str,
               owner: str, cap: int) -> Job:
    """Store and queue a native job for `req` on `model`; returns the queued job."""
    now = int(time.time())
    params = params_of(req)
    specs = (ChunkSpec(model=model, items=list(range(start, end)), counts=[1] * (end - start),
                       inputs=req.inputs[start:end], params=params) for start, end in chunk_bounds(req.inputs))
    job = Job(id=new_id(JOB_PREFIX), owner=owner, kind="job", model=model, status=JobStatus.QUEUED, created_at=now,
              total=len(req.inputs), chunks=0, encoding_format=req.encoding_format,
              embedding_type=req.embedding_types[0], expires_at=now + settings.job_ttl)
    return submit(scheduler, data, job, specs, cap=cap, settings=settings)


def file_chunk_specs(inputs: Iterable[tuple[str | None, str | None, dict | None]], model: str, params: ChunkParams,
                     max_inputs: int = defaults.JOB_CHUNK_INPUTS,
                     max_chars: int = defaults.JOB_CHUNK_CHARS) -> Iterator[ChunkSpec]:
    """Chunks of a user_data file's (text, id, error) items, cut as `chunk_bounds` cuts a list, one
    chunk in memory at a time. An item with an error has no input: it is failed by the worker alone."""
    items: list[int] = []
    counts: list[int] = []
    texts: list[str] = []
    ids: list = []
    bad: dict = {}
    weight = 0
    for index, (text, item_id, error) in enumerate(inputs):
        cost = len(text) if text is not None else 0
        if items and (len(items) >= max_inputs or weight + cost > max_chars):
            yield _file_spec(model, params, items, counts, texts, ids, bad)
            items, counts, texts, ids, bad, weight = [], [], [], [], {}, 0
        items.append(index)
        ids.append(item_id)
        if error is not None:
            counts.append(0)
            bad[str(index)] = {"status": 400, "error": error}
        else:
            counts.append(1)
            texts.append(text)
            weight += cost
    if items:
        yield _file_spec(model, params, items, counts, texts, ids, bad)


def _file_spec(model, params, items, counts, texts, ids, bad) -> ChunkSpec:
    return ChunkSpec(model=model, items=items, counts=counts, inputs=texts, params=params,
                     ids=ids if any(i is not None for i in ids) else None, bad=bad or None)


def submit_file_job(scheduler: Scheduler, data: JobData, settings: Settings, req: EmbeddingRequest, model: str,
                    owner: str, cap: int, record: dict) -> Job:
    """Store and queue a native job over an uploaded user_data file (`record`), streamed from the store."""
    now = int(time.time())
    specs = file_chunk_specs(user_data_inputs(data.store, record), model, params_of(req))
    job = Job(id=new_id(JOB_PREFIX), owner=owner, kind="job", model=model, status=JobStatus.QUEUED, created_at=now,
              total=int(record["lines"]), chunks=0, encoding_format=req.encoding_format,
              embedding_type=req.embedding_types[0], expires_at=now + settings.job_ttl)
    return submit(scheduler, data, job, specs, cap=cap, settings=settings)


def find_job(store: JobRecords, job_id: str, owner: str) -> Job:
    """The caller's job, or the same 404 for unknown, expired, deleted and someone else's."""
    job = store.get(job_id, owner) if job_id.startswith(JOB_PREFIX) else None
    if job is None or job.kind != "job":
        raise NotFound(f"No job with id '{job_id}'.", param="job_id")
    return job


def job_object(store: JobRecords, job: Job) -> dict:
    """The job as the API shows it."""
    body = {
        "id": job.id, "object": "embedding.job", "model": job.model, "status": job.status.value,
        "created_at": job.created_at, "started_at": job.started_at, "completed_at": job.completed_at,
        "cancelled_at": job.cancelled_at, "expires_at": job.expires_at, "encoding_format": job.encoding_format,
        "embedding_type": job.embedding_type, "request_counts": {"total": job.total, "completed": job.completed, "failed": job.failed},
    }
    if job.failed:
        body["errors"] = {"object": "list", "data": store.error_sample(job.id)}
    return body
