"""Bulk jobs on the API side: check a request, cut it into chunks, submit the job (api/bulk/submission.py).

A job's inputs are the request's `input`, or an uploaded user_data file's lines (`input_file_id`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from flask import Response, jsonify

from api.admission import admit
from api.auth import Identity
from api.bulk.chunking import input_weight, limits_for, runs
from api.bulk.files import user_data_inputs
from api.bulk.submission import submit
from api.context import Services
from api.validation.embeddings import EmbeddingRequest, check_for_model
from embedserve import defaults
from embedserve.errors import InvalidRequest, NotFound
from embedserve.fleet import stage_times
from embedserve.ids import new_id
from embedserve.jobs.chunks import ChunkParams, ChunkSpec
from embedserve.jobs.data import JobData
from embedserve.jobs.records import Job, JobRecords, JobStatus
from embedserve.jobs.repeats import RepeatFinder
from embedserve.jobs.scheduler import Scheduler
from embedserve.settings import Settings

JOB_PREFIX = "job_"


def chunk_bounds(inputs: list, max_inputs: int = defaults.JOB_CHUNK_INPUTS,
                 max_chars: int = defaults.JOB_CHUNK_CHARS) -> Iterator[tuple[int, int]]:
    """(start, end) slices of `inputs`, one per chunk (api/bulk/chunking.py's rule)."""
    start = 0
    for run in runs(inputs, lambda item: (1, input_weight(item)), max_inputs, max_chars):
        yield start, start + len(run)
        start += len(run)


def params_of(req: EmbeddingRequest) -> ChunkParams:
    """The request fields a worker needs for every chunk."""
    return ChunkParams(input_type=req.input_type, instruction=req.instruction, truncate=req.truncate,
                       dimensions=req.dimensions, truncation_direction=req.truncation_direction,
                       embedding_type=req.embedding_types[0], long_input=req.long_input,
                       window_overlap=req.window_overlap if req.windowed else None)


def queue_job(svc: Services, identity: Identity, owner: str, cap: int, req: EmbeddingRequest,
              record: dict | None = None) -> Job:
    """Check `req` against its model, then store and queue it as a job: over its inputs, or over the
    uploaded user_data file `record` (api/bulk/files.find_input_file). For POST /v1/jobs and for POST
    /v1/embeddings with `Prefer: respond-async`."""
    served = check_for_model(req, svc.registry, accept_token_ids=svc.settings.accept_token_ids)
    with admit(0, identity):  # a job is a request like any other for the key's requests-per-minute
        return submit_job(svc.scheduler, svc.job_data, svc.settings, req, served.card.name, owner, cap, record,
                          webhook=identity.webhook)


def submit_job(scheduler: Scheduler, data: JobData, settings: Settings, req: EmbeddingRequest, model: str,
               owner: str, cap: int, record: dict | None = None, webhook: bool = False) -> Job:
    """Store and queue a native job for `req` on `model`, over its inputs or over the user_data file
    `record` (streamed from the store); returns the queued job. `webhook`: its end is an event for
    the key's endpoint."""
    now = int(time.time())
    params = params_of(req)
    total = len(req.inputs) if record is None else file_inputs(record, settings.max_job_inputs)
    limits = limits_for(total, stage_times.bulk_rate(scheduler.redis, model))
    # An input an earlier chunk holds is embedded once (embedserve/jobs/repeats.py); a long input's windows are
    # no single row to copy, so jobs that split long inputs are embedded as sent.
    repeats = RepeatFinder(enabled=not req.windowed)
    if record is None:
        specs = (marked(ChunkSpec(model=model, items=list(range(start, end)), counts=[1] * (end - start),
                                  inputs=req.inputs[start:end], params=params), repeats)
                 for start, end in chunk_bounds(req.inputs, *limits))
    else:
        specs = file_chunk_specs(user_data_inputs(data.store, record), model, params, *limits, repeats=repeats)
    job = Job(id=new_id(JOB_PREFIX), owner=owner, kind="job", model=model, status=JobStatus.QUEUED, created_at=now,
              total=total, chunks=0, encoding_format=req.encoding_format,
              embedding_type=req.embedding_types[0], long_input=req.long_input, expires_at=now + settings.job_ttl,
              webhook=int(webhook))
    return submit(scheduler, data, job, specs, cap=cap, ttl=settings.job_ttl + settings.job_record_grace)


def file_inputs(record: dict, max_inputs: int) -> int:
    """The inputs of a job over the user_data file `record` (one a non-blank line), within the same
    EMBED_MAX_JOB_INPUTS as a job's `input` list: 400 too_many_inputs before anything is stored."""
    lines = int(record["lines"])
    if lines > max_inputs:
        raise InvalidRequest(f"The file {record['id']} has {lines} lines, more than a job takes ({max_inputs}, "
                             "EMBED_MAX_JOB_INPUTS); split it into several files and jobs.", param="input_file_id",
                             code="too_many_inputs")
    return lines


def file_chunk_specs(inputs: Iterable[tuple[str | None, str | None, dict | None]], model: str, params: ChunkParams,
                     max_inputs: int = defaults.JOB_CHUNK_INPUTS,
                     max_chars: int = defaults.JOB_CHUNK_CHARS, repeats: RepeatFinder | None = None) -> Iterator[ChunkSpec]:
    """Chunks of a user_data file's (text, id, error) items, cut by api/bulk/chunking.py's rule, one
    chunk in memory at a time. An item with an error has no input: it is failed by the worker alone,
    and weighs nothing, but counts as one of the chunk's inputs. `repeats`, when given, marks the items
    whose text an earlier chunk holds."""
    def size(entry: tuple[int, tuple]) -> tuple[int, int]:
        text, _, error = entry[1]
        return 1, 0 if error is not None else len(text)

    for run in runs(enumerate(inputs), size, max_inputs, max_chars):
        items: list[int] = []
        counts: list[int] = []
        texts: list[str] = []
        ids: list = []
        bad: dict = {}
        for index, (text, item_id, error) in run:
            items.append(index)
            ids.append(item_id)
            if error is not None:
                counts.append(0)
                bad[str(index)] = {"status": 400, "error": error}
            else:
                counts.append(1)
                texts.append(text)
        spec = _file_spec(model, params, items, counts, texts, ids, bad)
        yield marked(spec, repeats) if repeats is not None else spec


def marked(spec: ChunkSpec, repeats: RepeatFinder) -> ChunkSpec:
    """`spec` with its repeats of earlier chunks marked, and the chunks their first occurrences are in."""
    spec.repeats = repeats.mark(spec.items, spec.counts, spec.inputs)
    spec.repeat_chunks = repeats.chunks_of(spec.repeats)
    return spec


def _file_spec(model, params, items, counts, texts, ids, bad) -> ChunkSpec:
    return ChunkSpec(model=model, items=items, counts=counts, inputs=texts, params=params,
                     ids=ids if any(i is not None for i in ids) else None, bad=bad or None)


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
        "embedding_type": job.embedding_type, "long_input": job.long_input,
        "request_counts": {"total": job.total, "completed": job.completed, "failed": job.failed},
        "cached_inputs": job.cached,
    }
    if job.failed:
        body["errors"] = {"object": "list", "data": store.error_sample(job.id)}
    if job.webhook:  # an extension: when the job's event reached the key's endpoint (docs/webhooks.md)
        body["webhook_delivered_at"] = job.webhook_delivered_at
    return body


def job_accepted(store: JobRecords, job: Job) -> Response:
    """The answer to a submitted job: 202, the job, and where to poll it."""
    response = jsonify(job_object(store, job))
    response.status_code = 202
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return response
