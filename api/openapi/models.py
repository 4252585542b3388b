"""GET /v1/models and /v1/models/{model_id}."""

from __future__ import annotations

from api.openapi.parts import AUTH_ERRORS, KEYED, error, json_response, ref
from embedserve.settings import Settings

MODEL_ID = {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def bodies(settings: Settings) -> tuple:
    return ()


def paths(settings: Settings) -> dict:
    return {
        "/v1/models": {"get": {
            **KEYED, "tags": ["models"], "operationId": "listModels",
            "summary": "Models in the catalogue (served now or before, or declared), with their live workers",
            "responses": {"200": json_response("The model list.", ref("ModelList")), **AUTH_ERRORS}}},
        "/v1/models/{model_id}": {"get": {
            **KEYED, "tags": ["models"], "operationId": "getModel", "summary": "One model by name or alias",
            "parameters": [MODEL_ID],
            "responses": {"200": json_response("The model.", ref("Model")),
                          "404": error("No such model in the catalogue."), **AUTH_ERRORS}}},
    }


def schemas(settings: Settings) -> dict:
    return {
        "Model": {
            "type": "object", "required": ["id", "object", "created", "owned_by"],
            "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                           "owned_by": {"type": "string"}, "kind": {"type": "string"},
                           "dimensions": {"type": "integer"}, "max_input_tokens": {"type": "integer"},
                           "aliases": {"type": "array", "items": {"type": "string"}},
                           "workers": {"type": "integer"}}},
        "ModelList": {"type": "object", "required": ["object", "data"],
                      "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": ref("Model")}}},
    }
