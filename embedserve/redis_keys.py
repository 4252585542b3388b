"""Every Redis key the service uses is built here, so the layout can be read in one place."""

PREFIX = "embed:"


def worker_heartbeats(model: str) -> str:
    """Sorted set: worker id -> last heartbeat (Redis's TIME), one per served model: what routing counts.

    Key names here are mirrored by Lua in embedserve/fleet/liveness.py and embedserve/jobs/scheduler.py.
    """
    return f"{PREFIX}workers:{model}"


def fleet() -> str:
    """Sorted set: every worker id -> last heartbeat (Redis's TIME): what the reaper sweeps."""
    return f"{PREFIX}fleet"


def worker_info(worker_id: str) -> str:
    """String (JSON): what a worker announced about itself (its model first); outlives its heartbeat a while."""
    return f"{PREFIX}worker:{worker_id}"


def held(worker_id: str) -> str:
    """Hash: the bulk chunks a worker holds now, "job_id|chunk" -> model; the reaper hands them back."""
    return f"{PREFIX}held:{worker_id}"


def store_identity() -> str:
    """String: the token the API wrote into the job store, so a worker can tell it shares the API's store."""
    return f"{PREFIX}store-identity"


def known_models() -> str:
    """Hash: served model name -> JSON model card (dims, max length, aliases); outlives workers."""
    return f"{PREFIX}models"


def quant_ranges(model: str) -> str:
    """Hash: "<card fingerprint>:<width>" -> the model's int8 calibration ranges (float32 bytes);
    part of the model's catalogue entry, dropped with it."""
    return f"{PREFIX}ranges:{model}"


def reply(request_id: str) -> str:
    """List a sync request's chunk results are pushed to; the API pops them."""
    return f"{PREFIX}reply:{request_id}"


def reply_claims(reply_key: str) -> str:
    """Hash: chunk number -> id of the worker that took it, for one sync request; the API re-sends
    a chunk whose worker died (api/inflight.py)."""
    return f"{reply_key}:claims"


def api_key(digest_hex: str) -> str:
    """Hash: one managed API key, by the SHA-256 of the key (name, prefix, rpm, tpm, created, last_used)."""
    return f"{PREFIX}apikey:{digest_hex}"


def api_key_names() -> str:
    """Hash: managed key name -> SHA-256 hex of the key; keeps names unique and revocable by name."""
    return f"{PREFIX}apikey-names"


def rate_limit(digest_hex: str) -> str:
    """Hash: one caller's request and token buckets (levels and last refill time)."""
    return f"{PREFIX}ratelimit:{digest_hex}"


def batch_stats(model: str) -> str:
    """Hash: forward-pass statistics workers of `model` add up (histogram bucket counts, sums, count)."""
    return f"{PREFIX}metrics:batches:{model}"


def forward_seconds(model: str) -> str:
    """Hash: seconds the forward threads of `model`'s workers spent on passes, by priority (float fields).

    Apart from `batch_stats`, whose fields are integers: an API of an earlier version reads that
    hash as integers, and a float there would break its /metrics in a rolling upgrade.
    """
    return f"{PREFIX}metrics:forward_seconds:{model}"


def cache_stats(model: str) -> str:
    """Hash: embedding-cache outcomes `model`'s workers add up: inputs found (hits), not found (misses),
    and failed cache calls (errors). In the broker's Redis, like the other metrics."""
    return f"{PREFIX}metrics:cache:{model}"


def cache_entry(model_fingerprint: str, scope: str, digest: str) -> str:
    """String in the cache Redis (EMBED_CACHE_URL), not the broker's: one input's vector under one model
    identity, one scope (a hashed API key, or "global") and one digest of the input and its options."""
    return f"embedcache:v1:{model_fingerprint}:{scope}:{digest}"


def stage_seconds(model: str) -> str:
    """Hash: seconds `model`'s workers spent per stage of a path, and items per path (embedserve/fleet/stage_times.py)."""
    return f"{PREFIX}metrics:stages:{model}"


def bulk_rate_probe(model: str) -> str:
    """String: inputs per second of forward that the first worker of `model` measured on a probe pass
    (worker/rate_probe.py); sizes jobs' chunks until workers have accounted real job chunks."""
    return f"{PREFIX}metrics:bulk_rate_probe:{model}"


def job(job_id: str) -> str:
    """Hash: one job's record (status, owner, counters, timestamps); see embedserve/jobs/records.py."""
    return f"{PREFIX}job:{job_id}"


def job_done(job_id: str) -> str:
    """Set of chunk numbers that finished (or will never run again): counts each chunk once."""
    return f"{PREFIX}job:{job_id}:done"


def job_ok(job_id: str) -> str:
    """Set: the chunks of a job that finished with at least one vector (a later chunk's repeats may skip theirs)."""
    return f"{PREFIX}job:{job_id}:ok"


def job_counted(job_id: str) -> str:
    """Set: the chunks of a job that a run's finish counted (with vectors or only failed rows): their parts
    are the job's result. `job_done` also holds chunks settled without a run (a cancel's unstarted ones)."""
    return f"{PREFIX}job:{job_id}:counted"


def job_attempts(job_id: str) -> str:
    """Hash: chunk number -> how many times a worker claimed it."""
    return f"{PREFIX}job:{job_id}:attempts"


def job_errors(job_id: str) -> str:
    """List (JSON): a sample of item errors, shown in the job object."""
    return f"{PREFIX}job:{job_id}:errors"


def job_prefailed(job_id: str) -> str:
    """String (msgpack): batch lines that failed before running (unknown model, bad body)."""
    return f"{PREFIX}job:{job_id}:prefailed"


def jobs_by_status(status: str) -> str:
    """Sorted set: ids of the jobs (native and batch-backed) now in `status`, scored by when their hash expires."""
    return f"{PREFIX}jobs:status:{status}"


def jobs_expiry() -> str:
    """Sorted set: job id -> when its data expires (unix s); the sweeper deletes it then."""
    return f"{PREFIX}jobs:expiry"


def jobs_pending() -> str:
    """Sorted set: job id -> when its submission began; removed when it is queued (a dead API's leftovers)."""
    return f"{PREFIX}jobs:pending"


def quota(owner: str) -> str:
    """Hash: one API key's jobs that have not ended -> their inputs (the per-key bulk quota)."""
    return f"{PREFIX}quota:{owner}"


def sched_ring(model: str) -> str:
    """List: the owners with bulk work for `model`, in turn order (embedserve/jobs/scheduler.py)."""
    return f"{PREFIX}sched:{model}:ring"


def sched_owner(model: str, owner: str) -> str:
    """Sorted set: one owner's active jobs of `model` -> submission time (ms), oldest first."""
    return f"{PREFIX}sched:{model}:owner:{owner}"


def sched_wake(model: str) -> str:
    """List: wake-up tokens for idle bulk slots of `model` (pushed on submit and hand-back)."""
    return f"{PREFIX}sched:{model}:wake"


def job_retry(job_id: str) -> str:
    """List: chunks of a job handed back (dead, drained or hung worker), run before new ones."""
    return f"{PREFIX}job:{job_id}:retry"


def sweeper_lock() -> str:
    """String: held by the one process that sweeps expired jobs right now."""
    return f"{PREFIX}sweeper-lock"


def owned(owner: str, kind: str) -> str:
    """Sorted set: ids of one API key's jobs, files or batches (`kind`), scored by creation time."""
    return f"{PREFIX}owner:{owner}:{kind}"


def file(file_id: str) -> str:
    """Hash: one file's record (OpenAI File object fields plus owner)."""
    return f"{PREFIX}file:{file_id}"


def file_content(file_id: str) -> str:
    """String: an uploaded file's bytes."""
    return f"{PREFIX}file:{file_id}:content"


def batch(batch_id: str) -> str:
    """Hash: one OpenAI batch (its job id, files, metadata, validation errors)."""
    return f"{PREFIX}batch:{batch_id}"


def files_expiry() -> str:
    """Sorted set: uploaded file ids, scored by when their job-store content expires (for the sweeper)."""
    return f"{PREFIX}files:expiry"


def webhook_event(event_id: str) -> str:
    """Hash: one event waiting to be delivered (type, object id, owner, attempts, lease); embedserve/events/outbox.py.

    Mirrored by the Lua of embedserve/events/outbox.py, which embedserve/jobs/scripts.py runs on a job's end.
    """
    return f"{PREFIX}webhook:{event_id}"


def webhooks_due() -> str:
    """Sorted set: event id -> when (ms, Redis's clock) it may next be sent; a taken event's lease end."""
    return f"{PREFIX}webhooks:due"


def webhook_counts() -> str:
    """Hash: deliveries (delivered, failed attempts, given up) counted over the whole fleet, for /metrics."""
    return f"{PREFIX}metrics:webhooks"
