"""The service's exception tree: each class carries its HTTP status and OpenAI error type.

The API turns any `ServiceError` into `{"error": {"message", "type", "param", "code"}}` in one
place (api/errors.py). Workers send the same four fields back in a reply, and the API rebuilds the
exception with `from_payload`, so an error raised on a GPU box reaches the client unchanged.

The openai client retries 408/409/429 and 5xx: only errors that may pass on retry use them.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of every error a client may see."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    def to_payload(self) -> dict[str, Any]:
        """The OpenAI error object (the value under "error")."""
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}

    @staticmethod
    def from_payload(payload: dict[str, Any], status: int) -> ServiceError:
        """Rebuild an error a worker reported; the status picks the class."""
        cls = _BY_STATUS.get(status, ServiceError)
        return cls(str(payload.get("message", "error")), param=payload.get("param"), code=payload.get("code"))


class InvalidRequest(ServiceError):
    """400: the request can never succeed as sent."""

    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(ServiceError):
    """401: missing or unknown API key."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(ServiceError):
    """403: the key is valid but may not do this."""

    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(ServiceError):
    """404: unknown route, model or object (or one owned by another key)."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(ServiceError):
    """405: the route exists but not for this method."""

    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class NotAcceptable(ServiceError):
    """406: the Accept header asks for a format this endpoint cannot produce."""

    status = 406
    type = "invalid_request_error"
    code = "not_acceptable"


class Gone(ServiceError):
    """410: the object is known but its data is no more (a job's result past its expiry)."""

    status = 410
    type = "invalid_request_error"
    code = "gone"


class PayloadTooLarge(ServiceError):
    """413: the body is over the configured limit."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(ServiceError):
    """415: the body is not JSON."""

    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class RateLimited(ServiceError):
    """429: too much at once; Retry-After says when to come back."""

    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"


class InternalError(ServiceError):
    """500: a bug or an unexpected failure; the message never carries internals."""

    status = 500
    type = "server_error"
    code = "internal_error"


class Unavailable(ServiceError):
    """503: no worker can take this right now; Retry-After says when to come back."""

    status = 503
    type = "server_error"
    code = "service_unavailable"


class Timeout(ServiceError):
    """504: the work did not finish within the sync timeout."""

    status = 504
    type = "server_error"
    code = "timeout"


_BY_STATUS = {cls.status: cls for cls in (
    InvalidRequest, AuthenticationFailed, PermissionDenied, NotFound, MethodNotAllowed, NotAcceptable,
    Gone, PayloadTooLarge, UnsupportedMediaType, RateLimited, InternalError, Unavailable, Timeout,
)}
