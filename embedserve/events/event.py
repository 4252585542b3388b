"""What an event says: its id, its type and its body, built the same way on every attempt.

A job or batch has exactly one event, for the first final status it reaches, so the event's id
is derived from the object's (`evt_` + its random part): stable across retries and processes,
which is what a receiver de-duplicates on (`webhook-id`). The body names the object, never its
inputs or vectors: the receiver fetches what it needs with its key.
"""

from __future__ import annotations

import json

EVENT_PREFIX = "evt_"
# Final job statuses, and the event each one sends for a native job and for a batch. A batch whose
# job ended `failed` (every line failed) is `completed`, as its status reads (api/bulk/batches.py).
JOB_EVENTS = {status: f"embedding.job.{status}" for status in ("completed", "failed", "cancelled", "expired")}
BATCH_EVENTS = {"completed": "batch.completed", "failed": "batch.completed", "cancelled": "batch.cancelled",
                "expired": "batch.expired"}
# A batch refused at validation never has a job: it fails on creation.
BATCH_FAILED = "batch.failed"


def event_id(object_id: str) -> str:
    """The one event id of a job or batch (`job_<hex>` -> `evt_<hex>`)."""
    return EVENT_PREFIX + object_id.rsplit("_", 1)[-1]


def body(event: dict) -> bytes:
    """The JSON body of `event` (an outbox record: id, type, object_id, created_at), OpenAI's shape."""
    return json.dumps({"id": event["id"], "object": "event", "type": event["type"],
                       "created_at": int(event["created_at"]), "data": {"id": event["object_id"]}},
                      separators=(",", ":")).encode()
