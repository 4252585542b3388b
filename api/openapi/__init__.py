"""The OpenAPI 3.1 description of every route, served at /openapi.json, and the /docs page.

Request bodies come from the contract (api/contract/), the one place they are declared and
validated; each module here holds, for its resource, only what no model can say: operations,
statuses, headers, and the response schemas (built by hand, as the responses are). The document
is built for the app's settings, so the limits set at start are the ones it publishes. A
schemathesis test calls the live API with every check on to keep the two in step. The docs page
is Swagger UI from the flask-swagger-ui package, which ships its assets: no CDN.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify
from flask_swagger_ui import get_swaggerui_blueprint

from api.contract.schema import components
from api.openapi import batches, cohere, embeddings, files, jobs, models, operations, rerank, tokenize
from api.openapi.parts import ERROR_SCHEMA
from embedserve.settings import Settings

# In the document's order.
RESOURCES = (embeddings, cohere, rerank, tokenize, models, jobs, files, batches, operations)
EXTENSION = "embedserve.openapi"

bp = Blueprint("openapi", __name__)


def document(settings: Settings) -> dict:
    """The whole document for an app running with `settings`."""
    paths: dict = {}
    schemas: dict = {"Error": ERROR_SCHEMA}
    for resource in RESOURCES:
        paths.update(resource.paths(settings))
        schemas.update(resource.schemas(settings))
    schemas.update(components(*(body for resource in RESOURCES for body in resource.bodies(settings))))
    return {
        "openapi": "3.1.0",
        "info": {"title": "embedserve", "version": "0.1.0",
                 "description": "Self-hosted, OpenAI-compatible text embeddings. Authenticate with "
                                "`Authorization: Bearer KEY`. Every error is "
                                "`{\"error\": {message, type, param, code}}`."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "A static (EMBED_API_KEYS) or managed "
                                                              "(`embedserve keys create`) key."}},
            "schemas": schemas,
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 document."""
    return jsonify(current_app.extensions[EXTENSION])


def init_app(app: Flask, settings: Settings) -> None:
    """/openapi.json (built once, for `settings`) and the Swagger UI page at /docs (assets served locally)."""
    app.extensions[EXTENSION] = document(settings)
    app.register_blueprint(bp)
    app.register_blueprint(get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "embedserve API"}))
