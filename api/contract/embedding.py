"""The /v1/embeddings body (OpenAI's, plus our options) and the /v1/jobs body built on it.

The input limit is a setting read at start (EMBED_MAX_JOB_INPUTS for jobs), so the bodies are
made for a limit, once each, by `embedding_body` and `job_body`.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Literal, Union

from pydantic import Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError

from api.contract.body import Body
from api.contract.fields import Name, NonNegative, Positive, String, Text, TokenId, TruncationDirection, refused
from embedserve import defaults
from embedserve.vector_types import EMBEDDING_TYPES

ENCODING_FORMATS = ("float", "base64")
INPUT_TYPES = ("query", "document")
# What an input longer than the model's maximum becomes (docs/api.md, "Long inputs").
LONG_INPUTS = ("error", "truncate", "mean", "windows")
WINDOWED = ("mean", "windows")
# What the schema says of long_input beyond its values: windows are cut at words and answered with character
# offsets, so a body that asks for them has text input (api/validation/embeddings.py refuses token ids with code
# unsupported_long_input); and `truncate: true` does not come with mean or windows (Options refuses it).
LONG_INPUT_RULES = {"allOf": [
    {"if": {"required": ["long_input"], "properties": {"long_input": {"enum": list(WINDOWED)}}},
     "then": {"properties": {"input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}}},
    {"not": {"required": ["truncate", "long_input"],
             "properties": {"truncate": {"const": True}, "long_input": {"enum": list(WINDOWED)}}}},
]}
# OpenAI's four shapes of `input`, by the names they go by in an error's location.
TEXT, TEXTS, TOKENS, TOKEN_ARRAYS = "a string", "an array of strings", "an array of token ids", \
    "an array of token-id arrays"


def input_shape(value: object) -> str | None:
    """Which of the four shapes `value` is meant as, from its first item; None when it is none of them.

    Picking the shape first (a tagged union) is what makes an error name the bad item,
    `input[3]`, instead of listing why each of the four shapes failed.
    """
    if isinstance(value, str):
        return TEXT
    if not isinstance(value, list) or not value:
        return None
    first = value[0]
    if isinstance(first, str):
        return TEXTS
    if isinstance(first, list):
        return TOKEN_ARRAYS
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return TOKENS
    return None


def input_field(max_inputs: int):
    """The `input` type: one text, texts, one input as token ids, or inputs as token ids; at most `max_inputs`."""
    return Annotated[Union[  # noqa: UP007 - X | Y of Annotated members is not a type pydantic discriminates
        Annotated[Text, Tag(TEXT)],
        Annotated[list[Text], Field(min_length=1, max_length=max_inputs), Tag(TEXTS)],
        Annotated[list[TokenId], Field(min_length=1), Tag(TOKENS)],  # one input, however many tokens
        Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1, max_length=max_inputs),
                  Tag(TOKEN_ARRAYS)],
    ], Discriminator(input_shape, custom_error_type="kind",
                     custom_error_message="'input' must be a non-empty string, array of strings, array of token "
                                          "ids, or array of token-id arrays."),
        Field(description=f"Text or token ids; at most {max_inputs} inputs, none empty.")]


class Options(Body):
    """What an embeddings body may set besides its input. Optional fields are left out, not sent as null:
    OpenAI's reference types them without null."""

    model_config = {"json_schema_extra": LONG_INPUT_RULES}

    model: Name = Field(None, description="Served name or alias; optional when one embedding model is served.")
    encoding_format: Literal[ENCODING_FORMATS] = "float"
    dimensions: Positive = Field(None, description="Keep the first N dimensions, re-normalized.")
    user: String = Field(None, description="Accepted and ignored (OpenAI uses it for abuse monitoring).")
    input_type: Literal[INPUT_TYPES] = Field("document", description="Our extension: what the input is, for "
                                                                     "models that embed queries differently.")
    instruction: String = Field(None, description="Our extension: the instruction for Qwen3-style queries.")
    truncate: bool = Field(False, description="Our extension: cut inputs longer than the model's maximum "
                                              "instead of refusing them.")
    embedding_type: Literal[EMBEDDING_TYPES] = Field(
        "float", description="Our extension: the vector type. int8/uint8: one byte per dimension (scalar "
                             "quantization with the model's calibrated ranges); binary/ubinary: the sign bits "
                             "packed 8 per byte, as int8 (minus 128) or uint8. As JSON integers with "
                             "encoding_format float; as the raw bytes with base64.")
    truncation_direction: TruncationDirection = "right"
    long_input: Literal[LONG_INPUTS] = Field(
        "error", description="Our extension: an input longer than the model's maximum is refused (`error`), cut "
                             "(`truncate`, as `truncate: true`), or split into overlapping windows of the model's "
                             "maximum that are embedded each: `mean` answers their token-weighted mean, "
                             "re-normalized; `windows` that and each window's vector with its character offsets.")
    window_overlap: NonNegative = Field(
        None, description=f"Our extension: tokens two neighbouring windows share, with `long_input` mean or windows; "
                          f"at most half a window's text tokens. Default {defaults.WINDOW_OVERLAP}, or half a window "
                          f"when that is less.")

    @model_validator(mode="after")
    def _one_long_input(self):
        # `truncate: true` is `long_input: truncate`: with mean or windows it asks for two things at once.
        if self.truncate and self.long_input in WINDOWED:
            raise PydanticCustomError("exclusive", f"'truncate': true cuts long inputs; 'long_input': "
                                                   f"{self.long_input!r} splits them. Send one of the two.",
                                      {"param": "long_input"})
        return self


# `input_file_id` belongs to the job body; the embeddings body names where it goes.
JobsOnly = refused("'input_file_id' is accepted only by POST /v1/jobs; send 'input' here.")


@cache
def embedding_body(max_inputs: int) -> type[Options]:
    """The POST /v1/embeddings body with at most `max_inputs` inputs."""
    Input = input_field(max_inputs)

    class EmbeddingBody(Options):
        """OpenAI's embeddings body, with our extensions."""

        input: Input
        input_file_id: JobsOnly = None

    return EmbeddingBody


@cache
def job_body(max_inputs: int) -> type[Options]:
    """The POST /v1/jobs body: the embeddings body with the job limit, or `input_file_id` instead of `input`."""
    Input = input_field(max_inputs)

    class JobBody(Options):
        """The embeddings body with the job limit (EMBED_MAX_JOB_INPUTS); instead of `input`, `input_file_id`
        may name a file uploaded with purpose user_data (one text a line)."""

        model_config = {"json_schema_extra": {**LONG_INPUT_RULES,
                                              "oneOf": [{"required": ["input"]}, {"required": ["input_file_id"]}]}}

        input: Input = None
        input_file_id: Text = Field(None, description="Instead of `input`: a file uploaded with purpose "
                                                      "user_data (.txt or .jsonl), one input a line.")

        @model_validator(mode="after")
        def _one_source(self):
            # The schema says this with oneOf (both present matches both branches); here in words.
            if self.input is not None and self.input_file_id is not None:
                raise PydanticCustomError("exclusive", "Send either 'input' or 'input_file_id', not both.",
                                          {"param": "input_file_id"})
            if self.input is None and self.input_file_id is None:
                raise PydanticCustomError("exclusive", "Missing required parameter: 'input'.", {"param": "input"})
            return self

    return JobBody
