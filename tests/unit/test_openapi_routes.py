"""The OpenAPI document describes exactly the routes the app serves (new routes must be added)."""

from __future__ import annotations

import re

from api.app import create_app
from api.contract.schema import components
from api.openapi import RESOURCES, document
from embedserve.settings import Settings

# Served, but not API operations: static files and Swagger UI's own assets under /docs/.
_NOT_OPERATIONS = {"/static/<path:filename>", "/docs/<path:path>"}


SETTINGS = Settings(api_keys=("unit-test-key-1",))
SPEC = document(SETTINGS)


def served_operations() -> set[tuple[str, str]]:
    app = create_app(SETTINGS)  # builds clients; connects to nothing yet
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.rule in _NOT_OPERATIONS:
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        out |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return out


def documented_operations() -> set[tuple[str, str]]:
    return {(path, method) for path, ops in SPEC["paths"].items() for method in ops}


def test_every_route_is_documented_and_every_documented_route_exists():
    assert served_operations() == documented_operations()


def test_every_operation_documents_its_errors_as_the_error_schema():
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")) and path not in ("/ready",):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
            if op.get("security"):
                assert "401" in op["responses"], (method, path)


def test_every_request_body_is_the_contracts():
    """Request bodies are declared once (api/contract/): the document only refers to them."""
    contract = set(components(*(body for resource in RESOURCES for body in resource.bodies(SETTINGS))))
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            for media in op.get("requestBody", {}).get("content", {}).values():
                assert media["schema"]["$ref"].rsplit("/", 1)[1] in contract, (method, path)
    assert contract <= set(SPEC["components"]["schemas"])


def test_the_document_publishes_the_limits_set_at_start():
    spec = document(Settings(api_keys=("unit-test-key-1",), max_job_inputs=5))
    job_inputs = spec["components"]["schemas"]["JobBody"]["properties"]["input"]["oneOf"]
    assert [shape.get("maxItems") for shape in job_inputs] == [None, 5, None, 5]
