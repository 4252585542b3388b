"""The POST /v2/embed body: what Cohere's v2 clients (`cohere.ClientV2.embed`) send.

Typed as Cohere's API reference types it. Text only: `images`, `inputs` (mixed text and image
content) and `input_type: image` are refused by name, since this server embeds text. `priority`
is accepted and ignored: a sync request already goes ahead of bulk work.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from api.contract.body import Body
from api.contract.fields import Name, NonNegative, Positive, Text, refused
from embedserve import defaults

COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
# Cohere's names; `base64` is the float vector's bytes, base64'd (see api/validation/cohere.py).
COHERE_EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary", "base64")
COHERE_TRUNCATE = ("NONE", "START", "END")

TextOnly = refused("This server embeds text only: send 'texts'.")


@cache
def cohere_embed_body(max_inputs: int) -> type[Body]:
    """The POST /v2/embed body with at most `max_inputs` texts."""

    class CohereEmbedBody(Body):
        """Cohere's v2 embed request (text inputs)."""

        # As _refuse_or_split says: long_input comes with neither truncate NONE nor max_tokens.
        model_config = {"json_schema_extra": {"allOf": [
            {"not": {"required": ["truncate", "long_input"], "properties": {"truncate": {"const": "NONE"}}}},
            {"not": {"required": ["max_tokens", "long_input"]}}]}}

        texts: list[Text] = Field(min_length=1, max_length=max_inputs,
                                  description=f"The texts to embed; at most {max_inputs}, none empty.")
        model: Name = Field(None, description="Served name or alias; optional when one embedding model is served.")
        # Required, as on Cohere for its v3+ models: embedding a query as a document (or the other way)
        # fails quietly on instruction-aware models, so the caller must say which it is.
        input_type: Literal[COHERE_INPUT_TYPES] = Field(
            description="search_query and search_document are our query and document; classification and "
                        "clustering use the model's prompt of that name, else (Qwen3-style models) an instruction "
                        "for the task.")
        embedding_types: list[Literal[COHERE_EMBEDDING_TYPES]] = Field(
            ["float"], min_length=1, description="One or more; each comes back under its own key.")
        output_dimension: Positive = Field(None, description="Keep the first N dimensions, re-normalized "
                                                             "(before quantizing).")
        truncate: Literal[COHERE_TRUNCATE] = Field("END", description="END cuts the end of a too-long text, START "
                                                                      "its start, NONE refuses it.")
        max_tokens: Positive = Field(None, description="Cut each text to this many tokens (by `truncate`); at "
                                                       "most the model's maximum.")
        priority: NonNegative = Field(None, description="Cohere's; accepted and ignored.")
        # Ours (Cohere has none): a long text embedded whole, as on /v1/embeddings (docs/api.md "Long inputs").
        long_input: Literal["mean", "windows"] = Field(
            None, description="Our extension: a text longer than the model's maximum is split into windows and "
                              "embedded whole instead of cut by `truncate`: `mean` answers their token-weighted "
                              "mean, `windows` that and, under `windows`, each window's vectors and offsets.")
        window_overlap: NonNegative = Field(None, description=f"Our extension: tokens two neighbouring windows "
                                                              f"share (default {defaults.WINDOW_OVERLAP}, or half a "
                                                              f"window when that is less).")
        images: TextOnly = None
        inputs: TextOnly = None

        @model_validator(mode="after")
        def _refuse_or_split(self):
            # truncate NONE keeps meaning "refuse a long text"; long_input means "embed it whole".
            if self.long_input is not None and self.truncate == "NONE":
                raise PydanticCustomError("exclusive", "'truncate': 'NONE' refuses long texts; 'long_input' embeds "
                                                       "them whole. Send one of the two.", {"param": "long_input"})
            # max_tokens cuts each text; long_input embeds all of it, in windows of the model's maximum.
            if self.long_input is not None and self.max_tokens is not None:
                raise PydanticCustomError("exclusive", "'max_tokens' cuts texts; 'long_input' embeds them whole. "
                                                       "Send one of the two.", {"param": "long_input"})
            return self

        @field_validator("input_type", mode="before")
        @classmethod
        def _not_image(cls, value: object) -> object:
            # Cohere's fifth input type, for image inputs: refused in words of its own.
            if value == "image":
                raise PydanticCustomError("kind", "input_type 'image' is not supported: this server embeds text.")
            return value

    return CohereEmbedBody
