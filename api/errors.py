"""The one place errors become HTTP responses: OpenAI-shaped JSON, never HTML or a traceback."""

from __future__ import annotations

import json
import logging
import math

import redis
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from embedserve import errors

log = logging.getLogger(__name__)

# Seconds a client is told to wait when Redis is unreachable.
REDIS_RETRY_AFTER_S = 5
# Werkzeug's own exceptions (routing, body limit) mapped onto ours, by status.
_HTTP_TO_SERVICE = {
    400: errors.InvalidRequest,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
}
_HTTP_MESSAGES = {
    404: "Unknown URL: {path}. See /v1/models, /v1/embeddings, /v1/jobs, /v1/files and /v1/batches.",
    405: "Method {method} is not allowed on {path}.",
    413: "The request body is larger than this server accepts ({limit} bytes).",
}


def error_response(exc: errors.ServiceError) -> Response:
    """Serialize a ServiceError with its status, plus Retry-After when it has one."""
    body = json.dumps({"error": exc.to_payload()})
    response = Response(body, status=exc.status, mimetype="application/json")
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


def register_error_handlers(app: Flask) -> None:
    """Route every exception the app can raise through `error_response`."""
    from flask import request

    @app.errorhandler(errors.ServiceError)
    def _service_error(exc: errors.ServiceError):
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        cls = _HTTP_TO_SERVICE.get(status, errors.InvalidRequest if status < 500 else errors.InternalError)
        template = _HTTP_MESSAGES.get(status)
        limit = request.max_content_length
        error = cls(template.format(path=request.path, method=request.method, limit=limit)
                    if template else (exc.description or "Bad request."))
        error.status = status  # keep werkzeug's exact status for the few codes not in the table
        response = error_response(error)
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(redis.RedisError)
    def _redis_error(exc: redis.RedisError):
        log.error("Redis error on %s %s: %s", request.method, request.path, exc)
        return error_response(errors.Unavailable("The service's queue is unreachable; retry shortly.",
                                                 code="queue_unavailable", retry_after=REDIS_RETRY_AFTER_S))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(errors.InternalError("The server had an error while processing your request."))
