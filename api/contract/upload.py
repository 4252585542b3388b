"""The POST /v1/files form: a file and its purpose.

The upload is parsed as it streams in (api/bulk/files.py), not through this model: it publishes the
form, and the purposes it lists are the ones api/bulk/files.py accepts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.bulk.files import UPLOAD_PURPOSES


class UploadForm(BaseModel):
    """The multipart/form-data fields of an upload."""

    file: bytes = Field(description="purpose batch: one batch request (a JSON object) a line; purpose user_data: "
                                    "a .txt file (one text a line) or .jsonl (a JSON string or {\"text\", \"id\"} "
                                    "a line).",
                        json_schema_extra={"contentMediaType": "application/octet-stream"})
    purpose: Literal[UPLOAD_PURPOSES]
