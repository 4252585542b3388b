"""How many bytes of large request bodies one API process reads and holds at once.

A job's JSON body may be up to EMBED_MAX_JOB_BODY_BYTES (512 MiB by default). It is read whole
and decoded into Python objects, which take several times its size, and it stays until its
request ends; a few such requests on one process's threads at once would exhaust its memory.
So a body larger than the sync limit (EMBED_MAX_BODY_BYTES) needs a share of a per-process budget
of EMBED_MAX_JOB_BODY_BYTES before it is read: one largest body at a time, or several smaller
ones. A request that finds the budget taken gets 503 `server_busy` with Retry-After at once,
before its body is read (the official clients retry a 503 by themselves; a wait here would hold a
request thread and its connection instead). Bodies within the sync limit never wait: the thread
count bounds them. Uploads (POST /v1/files) are streamed to the store, never held, so they take no
share.
"""

from __future__ import annotations

import threading

from flask import Flask, current_app, g

from embedserve.errors import Unavailable

EXTENSION = "embedserve.body_budget"
# Seconds a refused client is told to wait: about the time one large body takes to read and store.
RETRY_AFTER_S = 5


class BodyBudget:
    """Bytes of large bodies being read or held now, against a limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Reserve `size` bytes; False when that would pass the limit (nothing reserved then)."""
        with self._lock:
            if self.used and self.used + size > self.limit:
                return False  # an empty budget takes any one body: the route's own limit bounds it
            self.used += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.used -= size


def init_app(app: Flask, limit: int) -> None:
    """A budget of `limit` bytes for this process, released when each request that took a share ends."""
    app.extensions[EXTENSION] = budget = BodyBudget(limit)

    @app.teardown_request
    def _release(_exc):
        size = g.pop("body_share", 0)
        if size:
            budget.give(size)


def reserve(size: int) -> None:
    """Take `size` bytes of this process's budget for the current request, or refuse it with 503."""
    budget: BodyBudget = current_app.extensions[EXTENSION]
    if not budget.take(size):
        raise Unavailable("This server is reading other large request bodies right now; retry shortly.",
                          code="server_busy", retry_after=RETRY_AFTER_S)
    g.body_share = g.get("body_share", 0) + size
