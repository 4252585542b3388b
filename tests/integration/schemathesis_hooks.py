"""Schemathesis hooks for tests/integration/test_openapi.py (loaded through SCHEMATHESIS_HOOKS).

Every built-in check runs, positive_data_acceptance through the wrapper below: a request the
document accepts must be accepted, except for the refusals the document cannot foresee, each
allowed by its operation and error code, never by status alone: a bare 400 on a schema-valid
request is still a failure, and that is the drift between the document and the validator that
the contract (api/contract/) exists to prevent.
"""

from __future__ import annotations

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

# Refusals only the model can know: its context length, its size, its vocabulary, its windows. And two only the
# catalogue can: what kind a named model is (an embedding model sent to /v1/rerank), and whether
# `model` may be left out (exactly one model of the kind is served), as the document says.
MODEL_REFUSALS = frozenset({"context_length_exceeded", "dimensions_too_large", "invalid_token_id",
                            "wrong_model_kind", "model_required",
                            # a long input's windows: how many it needs, and how much of one the overlap may be
                            "too_many_windows", "window_overlap_too_large"})
# Refusals only the uploaded file's content can know: its lines (JSONL for purpose batch), its name
# (*.txt or *.jsonl for user_data), that it has any. A form field of type binary says none of that.
FILE_REFUSALS = frozenset({"invalid_jsonl", "invalid_file_type", "empty_file"})
ALLOWED = {"/v1/embeddings": MODEL_REFUSALS, "/embeddings": MODEL_REFUSALS, "/v1/jobs": MODEL_REFUSALS,
           "/v2/embed": MODEL_REFUSALS,
           "/v1/rerank": MODEL_REFUSALS, "/v2/rerank": MODEL_REFUSALS, "/rerank": MODEL_REFUSALS,
           "/tokenize": MODEL_REFUSALS, "/detokenize": MODEL_REFUSALS, "/v1/files": FILE_REFUSALS}


@schemathesis.check
def positive_data_acceptance_but_unforeseeable_refusals(ctx, response, case):
    """positive_data_acceptance, with the refusals above let through by code."""
    if response.status_code == 400 and _error_code(response) in ALLOWED.get(case.operation.path, ()):
        return None
    return positive_data_acceptance(ctx, response, case)


def _error_code(response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
