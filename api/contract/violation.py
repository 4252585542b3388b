"""A body the contract refuses, as the InvalidRequest a client sees: OpenAI's `param`, a message, a code.

pydantic reports every problem; a client is told about the first, in the body's field order, as
the hand-written checks before the contract did: `param` names the top-level field and the
message its path (`input[3]`), the codes clients branch on (`too_many_inputs`) are kept.
"""

from __future__ import annotations

from pydantic import ValidationError

from embedserve.errors import InvalidRequest

# The code of an array over its limit, by field: what OpenAI (and Cohere for documents) answer with.
LIMIT_CODES = {"input": "too_many_inputs", "texts": "too_many_inputs", "documents": "too_many_documents"}
# Errors the contract words itself (api/contract/fields.py and the bodies): shown as they are.
WORDED = frozenset({"field_refused", "kind", "exclusive"})
_NOT_AN_OBJECT = frozenset({"model_type", "model_attributes_type", "dict_type"})


def invalid_request(error: ValidationError) -> InvalidRequest:
    """The InvalidRequest for the first problem `error` lists."""
    first = error.errors(include_url=False, include_input=False)[0]
    kind, loc, ctx = first["type"], first["loc"], first.get("ctx") or {}
    param = str(loc[0]) if loc else ctx.get("param")
    path = _path(loc)
    if not loc and kind in _NOT_AN_OBJECT:
        return InvalidRequest("The request body must be a JSON object.")
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{path}'.", param=param)
    if kind in WORDED:
        return InvalidRequest(first["msg"], param=param)
    if kind == "too_long" and path == param and param in LIMIT_CODES:
        return InvalidRequest(f"'{param}' has {ctx.get('actual_length')} items; at most {ctx.get('max_length')} "
                              f"are allowed per request.", param=param, code=LIMIT_CODES[param])
    if kind == "string_unicode":
        return InvalidRequest(f"'{path}' contains an unpaired surrogate (invalid Unicode).", param=param)
    return InvalidRequest(f"Invalid '{path}': {first['msg']}.", param=param)


def _path(loc: tuple) -> str:
    """`input[3]`, `documents[0].text`: the location as a client reads it, without union branch names."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]" and not _is_branch(part):  # "[key]": pydantic's mark on a bad dict key
            out += f".{part}" if out else part
    return out


def _is_branch(part: object) -> bool:
    # Branches of the contract's tagged unions are named in words ("an array of strings"); a field never has a space.
    return isinstance(part, str) and " " in part
