"""What operators and tools call: /health, /ready, /metrics, the docs page and this document."""

from __future__ import annotations

from api.openapi.parts import REQUEST_ID, RETRY_AFTER, error, json_response, ref
from embedserve.settings import Settings


def bodies(settings: Settings) -> tuple:
    return ()


def paths(settings: Settings) -> dict:
    return {
        "/health": {"get": {
            "tags": ["operations"], "operationId": "health", "summary": "Liveness: the process is up",
            "responses": {"200": json_response("Up.", {"type": "object", "required": ["status"],
                                                       "properties": {"status": {"const": "ok"}}})}}},
        "/ready": {"get": {
            "tags": ["operations"], "operationId": "ready",
            "summary": "Readiness: Redis answers and the model catalogue is readable",
            "responses": {"200": json_response("Ready.", ref("Readiness")),
                          "503": json_response("Not ready.", ref("Readiness"), RETRY_AFTER)}}},
        "/metrics": {"get": {
            "tags": ["operations"], "operationId": "metrics", "summary": "Prometheus metrics (text format)",
            "responses": {"200": {"description": "Prometheus text exposition format 0.0.4.", "headers": REQUEST_ID,
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "401": error("EMBED_METRICS_TOKEN is set and the request did not send it."),
                          "503": error("Redis is unreachable.", retry=True)},
            # Open unless EMBED_METRICS_TOKEN is set; then that token, as a bearer token, is required.
            "security": [{}, {"bearerAuth": []}] if not settings.metrics_token else [{"bearerAuth": []}],
            **({"description": "Needs `Authorization: Bearer <EMBED_METRICS_TOKEN>` on this server."}
               if settings.metrics_token else {})}},
        "/docs/": {"get": {
            "tags": ["operations"], "operationId": "docs", "summary": "This document, rendered (Swagger UI)",
            "responses": {"200": {"description": "HTML page.", "headers": REQUEST_ID,
                                  "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {
            "tags": ["operations"], "operationId": "openapi", "summary": "This document",
            "responses": {"200": json_response("OpenAPI 3.1 document.", {"type": "object"})}}},
    }


def schemas(settings: Settings) -> dict:
    return {"Readiness": {"type": "object", "required": ["status", "redis", "models"],
                          "properties": {"status": {"enum": ["ready", "unavailable"]},
                                         "redis": {"enum": ["ok", "unreachable"]},
                                         "models": {"type": "object", "additionalProperties": {"type": "integer"}}}}}
