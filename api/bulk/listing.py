"""A page of the caller's jobs, files or batches: OpenAI's list shape, newest first.

The three list routes differ only in how one id becomes an object; the paging (`limit`,
`after`), the dropping of ids that expired since they were listed, and the envelope are here.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, jsonify, request

from api.context import owner, services
from embedserve import defaults
from embedserve.errors import InvalidRequest


def list_params() -> tuple[int, str | None]:
    """`limit` (1..LIST_LIMIT_MAX) and `after` of a list request, or a 400 naming the bad one."""
    raw = request.args.get("limit", str(defaults.LIST_LIMIT_DEFAULT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= defaults.LIST_LIMIT_MAX:
        raise InvalidRequest(f"'limit' must be an integer between 1 and {defaults.LIST_LIMIT_MAX}, got {raw!r}.",
                             param="limit")
    return limit, request.args.get("after") or None


def list_page(kind: str, load: Callable[[str], dict | None], keep: Callable[[dict], bool] = lambda _obj: True,
              show: Callable[[dict], dict] = lambda obj: obj) -> Response:
    """`{"object": "list", "data", "first_id", "last_id", "has_more"}` of the caller's `kind` ("jobs",
    "files", "batches"): `load(id)` gives an object, or None for one that expired since it was listed
    (its id is then dropped from the listing); `keep` filters what the page shows, `show` shapes it."""
    svc = services()
    limit, after = list_params()
    ids, has_more = svc.jobs.list(owner(), kind, limit, after)
    data = []
    for item_id in ids:
        obj = load(item_id)
        if obj is None:
            svc.jobs.forget(owner(), kind, item_id)
        elif keep(obj):
            data.append(show(obj))
    return jsonify({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None, "has_more": has_more})
