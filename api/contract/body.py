"""The base of every request body: strict types, unknown fields ignored, a refusal as an InvalidRequest."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, ValidationError

from api.contract.violation import invalid_request


class Body(BaseModel):
    """A JSON request body. Unknown fields are ignored, as OpenAI's clients expect of a compatible server."""

    # hide_input_in_errors: a refused 2048-input body is not copied into the error it makes.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, hide_input_in_errors=True)

    @classmethod
    def check(cls, data: object) -> Self:
        """`data` (decoded JSON) as this body, or the InvalidRequest naming its first problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise invalid_request(exc) from None
