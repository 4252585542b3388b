"""Every Redis key the service uses is built here, so the layout can be read in one place."""

PREFIX = "embed:"


def worker_heartbeats(model: str) -> str:
    """Sorted set: worker id -> last heartbeat (unix time), one per served model."""
    return f"{PREFIX}workers:{model}"


def worker_info(worker_id: str) -> str:
    """String (JSON): what a worker announced about itself; expires with its heartbeat."""
    return f"{PREFIX}worker:{worker_id}"


def known_models() -> str:
    """Hash: served model name -> JSON model card (dims, max length, aliases); outlives workers."""
    return f"{PREFIX}models"


def reply(request_id: str) -> str:
    """List a sync request's chunk results are pushed to; the API pops them."""
    return f"{PREFIX}reply:{request_id}"


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


def job(job_id: str) -> str:
    """Hash: one job's record (status, owner, counters, timestamps); see embedserve/jobs.py."""
    return f"{PREFIX}job:{job_id}"


def job_input(job_id: str, chunk: int) -> str:
    """String (msgpack ChunkSpec): the inputs of one chunk of a job."""
    return f"{PREFIX}job:{job_id}:in:{chunk}"


def job_output(job_id: str, chunk: int) -> str:
    """String (msgpack ChunkOutput): one chunk's vectors and errors; a redelivery overwrites it."""
    return f"{PREFIX}job:{job_id}:out:{chunk}"


def job_done(job_id: str) -> str:
    """Set of chunk numbers that finished (or were skipped): counts each chunk once."""
    return f"{PREFIX}job:{job_id}:done"


def job_attempts(job_id: str) -> str:
    """Hash: chunk number -> how many times a worker started it."""
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
