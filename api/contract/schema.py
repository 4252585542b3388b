"""The contract's JSON Schema, as OpenAPI components: one per body, and the models they reference."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

REF = "#/components/schemas/{model}"


class _Published(GenerateJsonSchema):
    """pydantic's schema less what would mislead a reader or a request generator: field titles (the
    property name says it), and `"default": null` on fields that take no null (leaving them out is the default)."""

    def field_title_should_be_set(self, schema) -> bool:
        return False

    def default_schema(self, schema):
        out = super().default_schema(schema)
        if "default" in out and out["default"] is None:
            del out["default"]
        return out


def components(*bodies: type[BaseModel]) -> dict[str, dict]:
    """Component schemas of `bodies`, named by class, with `$ref`s between them pointing into components."""
    _, defs = models_json_schema([(body, "validation") for body in bodies], ref_template=REF,
                                 schema_generator=_Published)
    return defs.get("$defs", {})
