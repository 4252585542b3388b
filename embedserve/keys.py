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
