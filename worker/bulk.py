"""The bulk-queue consumer: job chunks are taken by their own threads, never by Celery's task slots.

If Celery's consumer took both queues, bulk messages would fill every prefetch slot (16 task
threads, prefetch 1 each) and a sync request's message would wait in Redis until some chunk
finished. So the Celery worker consumes only the interactive queue, and this module runs
EMBED_BULK_SLOTS threads, each with its own broker connection and a prefetch of one, taking
chunks from the bulk queue: at most that many chunks are in the worker at once, and none of
them stands between a sync message and a free task thread.

Delivery guarantees are kombu's, as for Celery tasks: a message is acknowledged only after its
chunk finished; one whose worker died stays in the transport's unacked set and is handed back
after the visibility timeout (the Celery consumer's restore sweep covers every queue).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from celery import Celery
from kombu import Exchange, Queue

from embedserve.protocol import JOB_CHUNK_TASK

log = logging.getLogger(__name__)

# Seconds one wait for a message may block, so a stop request is noticed.
POLL_S = 1.0
# Seconds between reconnection attempts after the broker went away.
RECONNECT_S = 1.0


class BulkConsumer:
    """`slots` threads that run `handle(job_id, chunk)` for each bulk message, acking after it."""

    def __init__(self, app: Celery, queue: str, handle: Callable[[str, int], None], slots: int):
        self._app = app
        self._queue = Queue(queue, Exchange(queue, type="direct"), routing_key=queue)
        self._handle = handle
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"bulk-{i}", daemon=True) for i in range(slots)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the chunks in hand, then close; unstarted ones go back to the queue."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._app.connection_for_read() as conn:
                    with conn.Consumer([self._queue], callbacks=[self._on_message], accept=["msgpack"],
                                       prefetch_count=1):
                        while not self._stop.is_set():
                            try:
                                conn.drain_events(timeout=POLL_S)
                            except TimeoutError:
                                continue
            except Exception:  # noqa: BLE001 - the broker went away: reconnect, never die
                if self._stop.is_set():
                    return
                log.warning("bulk consumer lost the broker; reconnecting", exc_info=True)
                self._stop.wait(RECONNECT_S)

    def _on_message(self, body, message) -> None:
        if message.headers.get("task") != JOB_CHUNK_TASK:
            log.error("dropping a message for %r on the bulk queue", message.headers.get("task"))
            message.ack()
            return
        args = body[0]  # Celery message protocol 2: (args, kwargs, embed)
        try:
            self._handle(str(args[0]), int(args[1]))
        except Exception:  # noqa: BLE001 - e.g. Redis down mid-chunk: give it back, attempts are counted
            log.exception("job %s chunk %s failed unexpectedly; handing it back", args[0], args[1])
            message.requeue()
            return
        message.ack()
