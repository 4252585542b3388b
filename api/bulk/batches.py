"""OpenAI Batches on the job machinery: a batch is a job whose items are the input file's lines.

Creating a batch reads its input file once, a block at a time: a line that is not a request
(bad JSON, missing custom_id, wrong url/method, duplicate custom_id) fails the whole batch at
validation, with `errors` naming the line, and nothing is stored; a line that is a request the
service would refuse (unknown model, empty input) fails alone and goes to the error file. Valid
lines (one model per batch, as OpenAI has it) are grouped by options and cut into chunks
like a native job's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from api.bulk.batch_output import roles
from api.bulk.chunking import ChunkBudget, input_weight, limits_for
from api.bulk.files import FILE_PREFIX, find_input_file, output_record_steps, uploaded_lines
from api.bulk.jobs import JOB_PREFIX, params_of
from api.bulk.submission import submit
from api.contract.batch import BatchBody
from api.validation.embeddings import check_for_model, parse_embedding_request
from embedserve import defaults, redis_keys
from embedserve.errors import InvalidRequest, NotFound, ServiceError
from embedserve.events import event as events
from embedserve.events.outbox import record_steps
from embedserve.fleet import stage_times
from embedserve.fleet.registry import Registry
from embedserve.ids import new_id
from embedserve.jobs.chunks import ChunkParams, ChunkSpec
from embedserve.jobs.data import JobData
from embedserve.jobs.records import Job, JobRecords, JobStatus
from embedserve.jobs.scheduler import Scheduler
from embedserve.settings import Settings

BATCH_PREFIX = "batch_"


class LineError(Exception):
    """A line that is not a valid batch request: the batch fails at validation."""

    def __init__(self, line: int, message: str, code: str = "invalid_request", param: str | None = None):
        super().__init__(message)
        self.line, self.message, self.code, self.param = line, message, code, param


@dataclass
class Plan:
    """What validation found: chunks (as they are yielded) and lines that failed alone."""

    lines: int = 0
    prefailed: list = field(default_factory=list)  # {"line", "custom_id", "status", "error"}
    model: str | None = None  # the batch's one model: the first valid line's (OpenAI's rule too)


def check_create_body(body: object) -> tuple[str, str, dict | None]:
    """(input_file_id, endpoint, metadata) of a POST /v1/batches body, or a 400 naming the field."""
    checked = BatchBody.check(body)
    return checked.input_file_id, checked.endpoint, checked.metadata


def plan_chunks(lines: Iterator[bytes], registry: Registry, endpoint: str, plan: Plan,
                accept_token_ids: bool = True,
                limits: Callable[[str], tuple[int, int]] | None = None) -> Iterator[ChunkSpec]:
    """Validate every line; yield chunks of valid lines, grouped by model and options; `limits(model)` is the
    (inputs, characters) budget of a chunk for that model (api/bulk/chunking.py), the small one when None."""
    def new_group(model: str) -> _Group:
        return _Group(budget=ChunkBudget(*limits(model))) if limits is not None else _Group()

    groups: dict[tuple, _Group] = {}  # (model, options) -> its chunk being filled
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        index = plan.lines
        plan.lines += 1
        custom_id, body = _request_of(raw, number, endpoint, seen)
        try:
            req = parse_embedding_request(body)
            # an embedding model's: no bulk slot serves a reranker, a line for one would never run
            served = check_for_model(req, registry, accept_token_ids=accept_token_ids)
            plan.model = plan.model or served.card.name
            if served.card.name != plan.model:
                raise InvalidRequest(f"A batch uses one model; this line asks for '{served.card.name}' after earlier "
                                     f"lines asked for '{plan.model}'.", param="model", code="mismatched_model")
        except ServiceError as exc:
            plan.prefailed.append({"line": index, "custom_id": custom_id, "status": exc.status,
                                   "error": exc.to_payload()})
            continue
        params = params_of(req)
        group_key = (served.card.name, params)
        group = groups.get(group_key)
        if group is None:
            group = groups[group_key] = new_group(served.card.name)
        weight = sum(input_weight(x) for x in req.inputs)
        if not group.budget.takes(len(req.inputs), weight):
            yield _spec(served.card.name, params, group)
            groups[group_key] = group = new_group(served.card.name)
        group.budget.add(len(req.inputs), weight)
        group.items.append(index)
        group.counts.append(len(req.inputs))
        group.inputs.extend(req.inputs)
        group.meta.append([custom_id, req.encoding_format])
    if plan.lines == 0:
        raise LineError(1, "The input file has no requests.", code="empty_file")
    for (model, params), group in groups.items():
        if group.items:
            yield _spec(model, params, group)


@dataclass
class _Group:
    """The chunk being filled for one (model, options) group of a batch's lines."""

    items: list = field(default_factory=list)
    counts: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    meta: list = field(default_factory=list)
    budget: ChunkBudget = field(default_factory=ChunkBudget)


def _spec(model: str, params: ChunkParams, group: _Group) -> ChunkSpec:
    return ChunkSpec(model=model, items=group.items, counts=group.counts, inputs=group.inputs, params=params,
                     meta=group.meta)


def _request_of(raw: bytes, number: int, endpoint: str, seen: set[str]) -> tuple[str, dict]:
    try:
        line = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise LineError(number, f"Line {number} is not valid JSON.", code="invalid_json_line") from None
    if not isinstance(line, dict):
        raise LineError(number, f"Line {number} is not a JSON object.", code="invalid_json_line")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise LineError(number, f"Line {number} has no 'custom_id' string.", param="custom_id")
    if custom_id in seen:
        raise LineError(number, f"Line {number} repeats custom_id {custom_id!r}; each must be unique.",
                        code="duplicate_custom_id", param="custom_id")
    seen.add(custom_id)
    if line.get("method") != "POST":
        raise LineError(number, f"Line {number}: 'method' must be 'POST'.", param="method")
    if line.get("url") != endpoint:
        raise LineError(number, f"Line {number}: 'url' must be the batch's endpoint {endpoint!r}, "
                                f"got {line.get('url')!r}.", code="mismatched_endpoint", param="url")
    if not isinstance(line.get("body"), dict):
        raise LineError(number, f"Line {number}: 'body' must be a JSON object.", param="body")
    return custom_id, line["body"]


def create_batch(records: JobRecords, scheduler: Scheduler, data: JobData, registry: Registry, settings: Settings,
                 owner: str, body: object, cap: int, webhook: bool = False) -> str:
    """Validate and start a batch; returns its id (a batch whose file is malformed is created failed).
    `webhook`: its end is an event for the key's endpoint."""
    file_id, endpoint, metadata = check_create_body(body)
    find_input_file(records.redis, file_id, owner, "batch")
    batch_id = new_id(BATCH_PREFIX)
    job_id = new_id(JOB_PREFIX)
    now = int(time.time())
    ttl = settings.job_ttl + defaults.BATCH_WINDOW_S
    batch = {"id": batch_id, "owner": owner, "job_id": job_id, "input_file_id": file_id, "endpoint": endpoint,
             "metadata": json.dumps(metadata), "created_at": now, "expires_at": now + defaults.BATCH_WINDOW_S,
             "output_file_id": new_id(FILE_PREFIX), "error_file_id": new_id(FILE_PREFIX),
             "data_expires_at": now + ttl, "webhook": int(webhook)}
    plan = Plan()
    # The whole file is checked before anything is queued: the lines are read twice (a count
    # for the quota, then the chunks), never held in memory.
    job = Job(id=job_id, owner=owner, kind="batch", model="", status=JobStatus.QUEUED, created_at=now,
              total=count_lines(uploaded_lines(data.store, file_id)), chunks=0,
              expires_at=now + defaults.BATCH_WINDOW_S, webhook=int(webhook), batch_id=batch_id)

    def stored(job: Job) -> dict:
        """What the lines told: the batch's model and the lines refused alone (kept for the error file)."""
        job.model = plan.model or ""
        job.failed = len(plan.prefailed)
        if plan.prefailed:
            data.put_prefailed(job_id, plan.prefailed)
        return {"data_expires_at": now + ttl}

    try:
        # A batch of nothing but refused lines still goes through the rotation: its one worker
        # step ends it at once (chunks == 0 ends on the first look).
        # A batch's chunks are sized as a job's of as many inputs (its lines; a line may hold more).
        rates: dict[str, float | None] = {}

        def limits(model: str) -> tuple[int, int]:
            if model not in rates:
                rates[model] = stage_times.bulk_rate(scheduler.redis, model)
            return limits_for(job.total, rates[model])

        submit(scheduler, data, job, plan_chunks(uploaded_lines(data.store, file_id), registry, endpoint, plan,
                                                 settings.accept_token_ids, limits),
               cap=cap, ttl=ttl, listed=False, stored=stored, then=lambda: _save_batch(records, batch, ttl))
    except LineError as exc:
        data.delete(job_id)
        errors = {"object": "list", "data": [{"code": exc.code, "message": exc.message, "param": exc.param,
                                              "line": exc.line}]}
        batch.update(status="failed", failed_at=now, errors=json.dumps(errors))
        _save_batch(records, batch, ttl)
    return batch_id


def count_lines(lines: Iterator[bytes]) -> int:
    """Non-blank lines of an upload."""
    return sum(1 for line in lines if line.strip())


def _save_batch(store: JobRecords, batch: dict, ttl: int) -> None:
    pipe = store.redis.pipeline(transaction=True)
    if batch.get("status") != "failed":  # a batch that failed validation has no output files
        for role in ("output", "error"):
            output_record_steps(pipe, batch[f"{role}_file_id"], batch["owner"], batch["job_id"], batch["id"], role,
                                int(batch["data_expires_at"]))
    pipe.hset(redis_keys.batch(batch["id"]), mapping=batch)
    pipe.expire(redis_keys.batch(batch["id"]), ttl)
    if batch.get("status") == "failed" and batch.get("webhook"):
        # No job script ends this batch: its event is recorded in the transaction that fails it.
        record_steps(pipe, {"id": events.event_id(batch["id"]), "type": events.BATCH_FAILED, "object_id": batch["id"],
                            "owner": batch["owner"], "created_at": batch["failed_at"]}, redis_keys.batch(batch["id"]))
    pipe.zadd(redis_keys.owned(batch["owner"], "batches"), {batch["id"]: time.time()})
    pipe.expire(redis_keys.owned(batch["owner"], "batches"), ttl)
    pipe.execute()


def find_batch(store: JobRecords, batch_id: str, owner: str) -> dict:
    """The caller's batch record, or the same 404 for unknown, expired and someone else's."""
    raw = store.redis.hgetall(redis_keys.batch(batch_id)) if batch_id.startswith(BATCH_PREFIX) else {}
    batch = {k.decode(): v.decode() for k, v in raw.items()}
    if not batch or batch.get("owner") != owner:
        raise NotFound(f"No batch with id '{batch_id}'.", param="batch_id")
    return batch


# How a job's status reads as an OpenAI batch status.
_STATUS = {JobStatus.QUEUED: "in_progress", JobStatus.IN_PROGRESS: "in_progress", JobStatus.COMPLETED: "completed",
           JobStatus.FAILED: "completed", JobStatus.CANCELLING: "cancelling", JobStatus.CANCELLED: "cancelled",
           JobStatus.EXPIRED: "expired"}


def batch_object(store: JobRecords, batch: dict) -> dict:
    """The OpenAI Batch object, from the batch record and its job's progress."""
    job = store.get(batch["job_id"]) if batch.get("status") != "failed" else None
    created = int(batch["created_at"])
    body = {
        "id": batch["id"], "object": "batch", "endpoint": batch["endpoint"], "errors": None,
        "input_file_id": batch["input_file_id"], "completion_window": defaults.BATCH_COMPLETION_WINDOW,
        "status": "failed", "output_file_id": None, "error_file_id": None, "created_at": created,
        "in_progress_at": None, "expires_at": int(batch["expires_at"]), "finalizing_at": None,
        "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": json.loads(batch.get("metadata") or "null"), "model": None, "usage": None,
    }
    if batch.get("status") == "failed":
        body.update(failed_at=int(batch["failed_at"]), errors=json.loads(batch["errors"]))
        if batch.get("webhook") == "1":  # an extension: when its event reached the key's endpoint (docs/webhooks.md)
            body["webhook_delivered_at"] = int(batch["webhook_delivered_at"]) if "webhook_delivered_at" in batch else None
        return body
    if job is None:  # the job's data expired before the batch record
        body.update(status="expired", expired_at=int(batch["expires_at"]))
        return body
    body.update(status=_STATUS[job.status], in_progress_at=created, model=job.model or None,
                completed_at=job.completed_at if job.status in (JobStatus.COMPLETED, JobStatus.FAILED) else None,
                finalizing_at=job.completed_at, cancelling_at=job.cancelling_at, cancelled_at=job.cancelled_at,
                expired_at=job.expired_at,
                request_counts={"total": job.total, "completed": job.completed, "failed": job.failed},
                usage={"input_tokens": job.tokens, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": job.tokens})
    if job.webhook:
        body["webhook_delivered_at"] = job.webhook_delivered_at
    files = roles(job)
    body.update(output_file_id=batch["output_file_id"] if "output" in files else None,
                error_file_id=batch["error_file_id"] if "error" in files else None)
    return body
