"""The field types the request bodies are built from, each publishing the JSON Schema it enforces.

Bodies are strict (api/contract/body.py): a string is a JSON string and a flag a
JSON boolean; "64" is not a number and "true" not a flag. An integer is what JSON Schema calls
one, which includes 2.0: such a float is taken as its int, anything else that is not an int
(a bool, 1.5, inf) is refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

# Any text, "" included. The zero minimum is no limit: a length bound makes pydantic decode the
# string, which is what refuses a lone surrogate (a valid JSON escape, but not Unicode that any
# tokenizer or msgpack takes); a bare `str` would pass it through.
String = Annotated[str, Field(min_length=0)]
# Text that must hold something: at least one character.
Text = Annotated[str, Field(min_length=1)]
# A name: at least one character that is not white space.
Name = Annotated[str, Field(min_length=1, pattern=r"\S")]


def _whole(value: float) -> int:
    if not value.is_integer():
        raise PydanticCustomError("int_from_float", "Input should be a valid integer, got a number with a "
                                                    "fractional part")
    return int(value)


class _Integer:
    """`Annotated[int, _Integer(minimum)]`: an int, or a float with no fractional part, at least `minimum`."""

    def __init__(self, minimum: int):
        self.minimum = minimum

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # Tried in order: ints (every real request) pass the first branch without a Python call.
        return core_schema.union_schema(
            [core_schema.int_schema(strict=True, ge=self.minimum),
             core_schema.no_info_after_validator_function(
                 _whole, core_schema.float_schema(strict=True, ge=self.minimum, allow_inf_nan=False))],
            custom_error_type="integer",
            custom_error_message=f"Input should be an integer of at least {self.minimum}")

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {"type": "integer", "minimum": self.minimum}


# Which end `truncate` cuts (TEI's `truncation_direction`): "right", the end, or "left", the start. TEI's
# own server reads "Left"/"Right" (its enum's names), which huggingface_hub's client sends: taken too.
TruncationDirection = Annotated[Literal["left", "right", "Left", "Right"], Field(
    description="Our extension (TEI's): which end `truncate` cuts, `right` (the end) or `left` (the start, keeping "
                "the end); the prompt and special tokens stay. Without `truncate: true` it has no effect.")]
# A count or size: 1 and up.
Positive = Annotated[int, _Integer(1)]
# A token id: 0 and up (the model's vocabulary bounds it; that is checked against the model).
TokenId = Annotated[int, _Integer(0)]
# A count or rank that may be 0 (JSON integers, 3.0 included, as with Positive).
NonNegative = Annotated[int, _Integer(0)]


def refused(message: str) -> Any:
    """A field that must be left out (it belongs to a sibling body, not this one); `message` says where it goes."""
    return Annotated[Any, _Refusal(message)]


class _Refusal:
    def __init__(self, message: str):
        self.message = message

    def _refuse(self, value: object) -> None:
        raise PydanticCustomError("field_refused", self.message)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self._refuse)

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {"not": {}}  # no value is valid: the property must be absent
