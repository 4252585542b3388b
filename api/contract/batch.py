"""The POST /v1/batches body: OpenAI's, for the one endpoint batches serve here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from api.contract.body import Body
from api.contract.fields import String, Text
from embedserve import defaults

ENDPOINTS = ("/v1/embeddings",)
# OpenAI's metadata limits: 16 pairs, keys of at most 64 characters, values of at most 512.
METADATA_MAX_KEYS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512

Metadata = Annotated[dict[Annotated[String, Field(max_length=METADATA_MAX_KEY)],
                          Annotated[String, Field(max_length=METADATA_MAX_VALUE)]],
                     Field(max_length=METADATA_MAX_KEYS)]


class BatchBody(Body):
    """What POST /v1/batches takes."""

    input_file_id: Text = Field(description="A file uploaded with purpose batch.")
    endpoint: Literal[ENDPOINTS]
    completion_window: Literal[defaults.BATCH_COMPLETION_WINDOW]
    # OpenAI's reference types metadata as an object or null.
    metadata: Metadata | None = Field(None, description="Up to 16 string pairs, kept with the batch.")
