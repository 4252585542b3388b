"""The sender: a thread in every API process that delivers due events, one at a time, with backoff.

Why the API processes, and there alone: the API is what knows the keys (the static keys' endpoint
is API configuration, EMBED_WEBHOOK_URL), it runs wherever the service runs (workers may scale to
zero), and webhook traffic then leaves from one kind of host, which a firewall can name. A thread
of its own (not the reaper's or the sweeper's): an attempt may wait EMBED_WEBHOOK_TIMEOUT twice
over, and neither requests, jobs nor the other housekeeping may wait behind a slow receiver.

An attempt: take the earliest due event with a lease (embedserve/events/outbox.py), find its key's
endpoint, check the URL's addresses now (embedserve/events/url_safety.py) and connect to the
address checked, POST the signed body, and record the outcome under the lease. A 2xx delivers; any
other answer (a redirect included: none is followed), a timeout or a refused connection is a failed
attempt, tried again after EMBED_WEBHOOK_RETRY_DELAY x 2^(failures so far), at most an hour apart,
until EMBED_WEBHOOK_RETRY_HOURS after the event.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time

from embedserve import defaults
from embedserve.events import event, signing, url_safety
from embedserve.events.endpoints import Endpoint, Endpoints
from embedserve.events.outbox import Outbox, Taken
from embedserve.periodic import Periodic
from embedserve.settings import Settings

log = logging.getLogger(__name__)

# Seconds a lease outlasts the longest attempt (a lookup, then a connect and an answer of
# EMBED_WEBHOOK_TIMEOUT each): only a dead sender's event waits out its lease.
LEASE_MARGIN_S = 5.0
USER_AGENT = "embedserve-webhooks"


def backoff(failures: int, first_delay: float, max_delay: float = defaults.WEBHOOK_MAX_DELAY_S) -> float:
    """Seconds before the next attempt after `failures` failed ones (1, 2, ...): doubling, capped."""
    return min(max_delay, first_delay * 2 ** max(0, failures - 1))


def post(endpoint: Endpoint, msg_id: str, body: bytes, timeout: float, allow_private: bool) -> str | None:
    """Send one attempt; None when the receiver answered 2xx, else why it failed (for the log)."""
    try:
        target = url_safety.resolve(endpoint.url, allow_private)
    except url_safety.UnsafeURL as exc:
        return str(exc)
    try:
        headers = signing.headers(endpoint.secret, msg_id, int(time.time()), body)
    except signing.BadSecret as exc:
        return str(exc)
    headers["user-agent"] = USER_AGENT
    if target.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)

    # Connect to the address url_safety checked, not to a second lookup of the name, which could
    # answer differently (DNS rebinding). TLS still verifies the certificate against the host name.
    def pinned(address, timeout=timeout, source_address=None):
        return socket.create_connection((target.address, address[1]), timeout, source_address)

    conn._create_connection = pinned
    # `timeout` bounds each connect and read; a receiver that sends its answer a byte at a time would
    # hold the attempt (and this thread, every key's deliveries) past its lease. The whole attempt gets
    # 2 x timeout, what the lease allows for it: then its socket is shut and the attempt fails.
    expired = threading.Event()
    watchdog = threading.Timer(2 * timeout, _shut, args=(conn, expired))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(defaults.WEBHOOK_RESPONSE_BYTES)
        status = response.status
    except (OSError, http.client.HTTPException, ValueError) as exc:  # ValueError: a URL http.client cannot send
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        watchdog.cancel()
        conn.close()
    if expired.is_set():  # a cut-off answer reads as ended early (http.client takes EOF as the headers' end)
        return f"no complete answer within {2 * timeout:g}s"
    return None if 200 <= status < 300 else f"HTTP {status}"


def _shut(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    """End an attempt that ran out of time: its blocked read returns at once."""
    expired.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Deliverer(Periodic):
    """Delivers due events every WEBHOOK_POLL_S, on a thread of its own once started."""

    def __init__(self, outbox: Outbox, endpoints: Endpoints, settings: Settings,
                 interval: float = defaults.WEBHOOK_POLL_S):
        super().__init__("webhooks", interval, self.step)
        self.outbox = outbox
        self._endpoints = endpoints
        self._settings = settings
        self.lease_s = 2 * settings.webhook_timeout + LEASE_MARGIN_S

    def step(self) -> int:
        """Attempt every due event (up to WEBHOOK_EVENTS_PER_STEP); returns how many were attempted."""
        attempted = 0
        while attempted < defaults.WEBHOOK_EVENTS_PER_STEP:
            taken = self.outbox.take(self.lease_s)
            if taken is None:
                break
            self.attempt(taken)
            attempted += 1
        return attempted

    def attempt(self, taken: Taken) -> None:
        """One delivery attempt of a leased event, its outcome recorded."""
        endpoint = self._endpoints.of(taken.fields.get("owner", ""))
        if endpoint is None:
            self.outbox.drop(taken)
            log.info("webhook event %s (%s) dropped: its key has no endpoint now", taken.id, taken.fields.get("type"))
            return
        settings = self._settings
        why = post(endpoint, taken.id, event.body(taken.fields), settings.webhook_timeout,
                   settings.webhook_allow_private)
        if why is None:
            if self.outbox.delivered(taken):
                log.info("webhook event %s (%s) delivered", taken.id, taken.fields.get("type"))
            return
        failures = taken.attempts + 1
        outcome = self.outbox.failed(taken, backoff(failures, settings.webhook_retry_delay),
                                     settings.webhook_retry_hours * 3600)
        if outcome == "given_up":
            log.warning("webhook event %s (%s) given up after %d attempts; the last: %s", taken.id,
                        taken.fields.get("type"), failures, why)
        else:
            log.warning("webhook event %s (%s) attempt %d failed: %s", taken.id, taken.fields.get("type"),
                        failures, why)
