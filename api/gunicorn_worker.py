"""gunicorn's threaded worker, answering requests it refuses before Flask sees them in our error shape.

gunicorn itself refuses a request line over 4094 bytes (414), too many or too large headers (431),
and malformed HTTP (400), with an HTML page. Clients of this API parse
`{"error": {"message", "type", "param", "code"}}` on every error, so those refusals are written
here in that shape, with gunicorn's status and message. Everything else is gunicorn's.
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker

# gunicorn's refusals that are not a plain 400: (its error's name, status, reason, our code). By name:
# older gunicorn releases (the floor is 22) lack some of them.
_STATUS = (
    ("LimitRequestLine", 414, "URI Too Long", "request_line_too_long"),
    ("LimitRequestHeaders", 431, "Request Header Fields Too Large", "headers_too_large"),
    ("UnsupportedTransferCoding", 501, "Not Implemented", "unsupported_transfer_coding"),
    ("ExpectationFailed", 417, "Expectation Failed", "expectation_failed"),
    ("ForbiddenProxyRequest", 403, "Forbidden", "forbidden"),
)
# What gunicorn counts as the client's fault (its Worker.handle_error): answered 4xx, not 500.
_CLIENT_ERRORS = tuple(getattr(errors, name) for name in (
    "InvalidRequestLine", "InvalidRequestMethod", "InvalidHTTPVersion", "InvalidHeader", "InvalidHeaderName",
    "LimitRequestLine", "LimitRequestHeaders", "InvalidProxyLine", "ForbiddenProxyRequest", "InvalidSchemeHeaders",
    "UnsupportedTransferCoding", "ObsoleteFolding", "ExpectationFailed", "InvalidChunkSize",
    "ChunkMissingTerminator", "InvalidChunkExtension") if hasattr(errors, name))


def refusal(exc: Exception) -> tuple[int, str, dict]:
    """Status, reason phrase and error body for a request gunicorn could not parse or would not take."""
    for name, status, reason, code in _STATUS:  # noqa: B007 - read after the loop breaks
        if isinstance(exc, getattr(errors, name, ())):
            break
    else:
        status, reason, code = 400, "Bad Request", "malformed_http_request"
    message = f"{reason}: {exc}." if str(exc) else f"{reason}."
    return status, reason, {"error": {"message": message, "type": "invalid_request_error", "param": None,
                                      "code": code}}


class JsonErrorWorker(ThreadWorker):
    """gunicorn's gthread worker whose HTTP-level refusals are JSON error bodies."""

    def handle_error(self, req, client, addr, exc):
        if not isinstance(exc, _CLIENT_ERRORS):
            return super().handle_error(req, client, addr, exc)
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        status, reason, body = refusal(exc)
        data = json.dumps(body).encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode("latin-1")
        try:
            util.write_nonblock(client, head + data)
        except Exception:  # noqa: BLE001 - the client went away; gunicorn ignores this too
            self.log.debug("Failed to send error message.")
