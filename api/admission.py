"""Admission before dispatch: the caller's rate limits, settled after the work.

`admit` is a context manager around the dispatch, so the token estimate is settled with the
real usage afterwards, or refunded when the work failed (a ServiceError, or any other exception
such as a Redis error while dispatching). Backpressure (EMBED_MAX_QUEUE) is
checked by the dispatcher in the same Redis round trip that sends the work; a request it
refuses for overload gets its request and its tokens back, so overload costs the caller nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from flask import Flask, Response, current_app, g

from api.auth import Identity
from api.dispatch import QUEUE_FULL
from api.ratelimit import RateLimiter
from api.validation.embeddings import EmbeddingRequest
from api.validation.rerank import RerankRequest
from embedserve.errors import InternalError, RateLimited, ServiceError, Timeout

EXTENSION = "embedserve.admission"
log = logging.getLogger(__name__)
# Characters per token assumed for text before the model has tokenized it (OpenAI's rule of thumb).
CHARS_PER_TOKEN = 4


class Ticket:
    """An admitted request: `record_usage(tokens)` notes what it really used, `settle` charges it."""

    def __init__(self, limiter: RateLimiter | None, identity: Identity, estimate: int):
        self._limiter = limiter
        self._identity = identity
        self.estimate = estimate
        self.used: int | None = None

    @property
    def key_name(self) -> str:
        return self._identity.name

    def record_usage(self, tokens: int) -> None:
        """Record the request's real token usage (charged against the estimate taken earlier)."""
        self.used = tokens

    def settle(self, failed: ServiceError | None) -> None:
        """Settle the estimate: with the real usage, a refund (failure) or nothing (timeout)."""
        if self._limiter is None:
            return
        ident = self._identity
        # Refused for overload before anything was sent: give the request back, as if never admitted.
        refund_request = failed is not None and failed.code == QUEUE_FULL and ident.rpm > 0
        token_delta = 0
        if ident.tpm > 0:
            # A timed-out request may still have used the GPU: it keeps its charge. Other failures are refunded.
            used = self.estimate if isinstance(failed, Timeout) else (0 if failed else self.used)
            token_delta = 0 if used is None else used - self.estimate
        if refund_request or token_delta:
            decision = self._limiter.settle(ident.digest.hex(), ident.rpm, ident.tpm, token_delta,
                                            request_delta=-1 if refund_request else 0)
            g.ratelimit_headers = decision.headers()


def init_app(app: Flask, client: redis.Redis) -> None:
    """Build the limiter and add the x-ratelimit-* headers to every response that has them."""
    app.extensions[EXTENSION] = RateLimiter(client)

    @app.after_request
    def _ratelimit_headers(response: Response) -> Response:
        for name, value in (g.get("ratelimit_headers") or {}).items():
            response.headers[name] = value
        return response


def estimate_tokens(req: EmbeddingRequest, max_length: int) -> int:
    """Tokens charged before dispatch: token-id counts, or characters / 4, each capped at max_length (a long
    input split into windows is not: its windows are all embedded)."""
    cap = max_length if max_length > 0 and not req.windowed else math.inf
    if req.token_ids:
        return int(sum(min(len(ids), cap) for ids in req.inputs))
    return int(sum(min(max(1, math.ceil(len(text) / CHARS_PER_TOKEN)), cap) for text in req.inputs))


def estimate_rerank_tokens(req: RerankRequest, max_length: int) -> int:
    """Each document is scored together with the query: characters / 4 of both, capped at max_length."""
    cap = max_length if max_length > 0 else math.inf
    return int(sum(min(max(1, math.ceil((len(req.query) + len(doc)) / CHARS_PER_TOKEN)), cap)
                   for doc in req.documents))


@contextmanager
def admit(estimate: int, identity: Identity) -> Iterator[Ticket]:
    """Refuse (429) or admit a request of about `estimate` tokens; on exit, settle with its real usage."""
    limiter: RateLimiter | None = current_app.extensions.get(EXTENSION)
    if limiter is None or (identity.rpm <= 0 and identity.tpm <= 0):
        ticket = Ticket(None, identity, estimate)
    else:
        decision = limiter.take(identity.digest.hex(), identity.rpm, identity.tpm, estimate)
        g.ratelimit_headers = decision.headers()
        if not decision.allowed:
            raise RateLimited(_limit_message(identity, decision.requests_left, estimate),
                              retry_after=decision.retry_after_s)
        # The script takes at most the whole bucket (a request bigger than the limit waits for a full
        # bucket instead of never passing); settle against what was really taken.
        ticket = Ticket(limiter, identity, min(estimate, identity.tpm) if identity.tpm > 0 else estimate)
    try:
        yield ticket
    except ServiceError as exc:
        _settle_failed(ticket, exc)
        raise
    except Exception as exc:
        # Anything else (a Redis error while dispatching, a bug) is a failure too: the work did not
        # run for the caller, so the estimate goes back, as for a 5xx ServiceError.
        _settle_failed(ticket, InternalError(f"dispatch failed: {type(exc).__name__}"))
        raise
    ticket.settle(None)


def _settle_failed(ticket: Ticket, failed: ServiceError) -> None:
    """Refund a failed request; if the refund itself cannot reach Redis, the caller still gets the
    original error (re-raised by `admit`), not the refund's."""
    try:
        ticket.settle(failed)
    except redis.RedisError as exc:
        log.warning("could not refund key %s after a failed request: %s", ticket.key_name, exc)


def _limit_message(identity: Identity, requests_left: int, estimate: int) -> str:
    if identity.rpm > 0 and requests_left < 1:
        return f"Rate limit reached: {identity.rpm} requests per minute for this key. Retry after the Retry-After delay."
    return (f"Rate limit reached: {identity.tpm} tokens per minute for this key (this request needs about "
            f"{min(estimate, identity.tpm)}). Retry after the Retry-After delay.")
