"""`embedserve models list|remove`: the model catalogue in the Redis named by EMBED_REDIS_URL.

`list` shows what GET /v1/models shows: the catalogued cards and, when this shell has the API's
EMBED_MODELS / EMBED_RERANK_MODELS, the declared models no worker has announced yet (the API
takes work for them; it waits for a worker).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from embedserve.cli.errors import guarded
from embedserve.fleet.catalogue import Catalogue, ModelKind
from embedserve.redis_client import client_for
from embedserve.settings import Settings

if TYPE_CHECKING:
    from embedserve.fleet.liveness import Liveness
    from embedserve.fleet.registry import Registry


def add_models_parser(sub) -> None:
    """Attach `models` and its subcommands to the top-level subparsers."""
    models = sub.add_parser("models", help="list the model catalogue, or remove a retired model from it")
    actions = models.add_subparsers(dest="models_command", required=True)
    listing = actions.add_parser("list", help="every catalogued or declared (EMBED_MODELS) model: kind, dimensions, "
                                              "max tokens, live workers, last seen")
    listing.add_argument("--json", action="store_true", help="one JSON object per model")
    listing.set_defaults(run=_list)
    remove = actions.add_parser("remove", help="forget a model (the API stops accepting it; a live worker "
                                               "announces it again)")
    remove.add_argument("name", help="the model's served name")
    remove.set_defaults(run=_remove)


def _open() -> tuple[Registry, Catalogue, Liveness]:
    # Here, so `embedserve --help` stays light.
    from embedserve.fleet.liveness import Liveness  # noqa: F811
    from embedserve.fleet.registry import Registry  # noqa: F811

    settings = Settings.from_env()
    client = client_for(settings, socket_connect_timeout=5, socket_timeout=30)
    # The API's own view (catalogue + declared models + live counts), so `list` shows what /v1/models does.
    return (Registry.from_settings(client, settings), Catalogue(client, settings.catalogue_ttl),
            Liveness(client, settings.worker_dead_after))


_guarded = guarded("models", _open)


@_guarded
def _list(registry: Registry, catalogue: Catalogue, liveness: Liveness, args: argparse.Namespace) -> int:
    models = registry.models(fresh=True)
    seconds, micros = registry.client.time()  # Redis's clock, the one the cards' last_seen is on
    now = seconds + micros / 1e6
    cards = [m.card for m in models]
    live = {m.card.name: m.live_workers for m in models}
    if args.json:
        for c in cards:
            print(json.dumps({"name": c.name, "kind": c.kind, "dimensions": c.dim, "max_tokens": c.max_length,
                              "aliases": list(c.aliases), "workers": live.get(c.name, 0),
                              "declared": c.is_declared, "last_seen": None if c.is_declared else c.last_seen}))
        return 0
    print(f"{'NAME':<32} {'KIND':<9} {'DIMS':>6} {'MAX TOKENS':>10} {'WORKERS':>7}  LAST SEEN")
    for c in cards:
        unknown = "?" if c.is_declared else None  # sizes come with a worker's card
        dims = "-" if c.kind == ModelKind.RERANK.value else unknown or str(c.dim)
        seen = "never (declared; no worker has announced it)" if c.is_declared else _seen(c.last_seen, now)
        print(f"{c.name:<32} {c.kind:<9} {dims:>6} {unknown or c.max_length:>10} {live.get(c.name, 0):>7}  {seen}")
    return 0


@_guarded
def _remove(registry: Registry, catalogue: Catalogue, liveness: Liveness, args: argparse.Namespace) -> int:
    declared = any(c.name == args.name for c in registry.declared)
    if not catalogue.remove(args.name):
        if declared:  # nothing catalogued: the API's settings name it
            print(f"embedserve models: '{args.name}' is only declared (EMBED_MODELS / EMBED_RERANK_MODELS): "
                  "take it out of the API's settings", file=sys.stderr)
        else:
            print(f"embedserve models: no model named '{args.name}' in the catalogue (see `embedserve models list`)",
                  file=sys.stderr)
        return 1
    workers = liveness.live_counts([args.name])[args.name]
    note = (f"; {workers} live worker(s) still serve it and will announce it again: stop them too"
            if workers else "")
    if declared:  # the API still knows it from its settings
        note += "; it is also declared (EMBED_MODELS / EMBED_RERANK_MODELS): take it out of the API's settings"
    print(f"removed model '{args.name}' from the catalogue{note}", file=sys.stderr)
    return 0


def _seen(last_seen: float, now: float) -> str:
    """When, in UTC, and how long ago by Redis's clock (so this host's clock does not matter)."""
    ago = max(0, int(now - last_seen))
    if ago < 120:
        age = f"{ago}s ago"
    elif ago < 7200:
        age = f"{ago // 60}m ago"
    elif ago < 172800:
        age = f"{ago // 3600}h ago"
    else:
        age = f"{ago // 86400}d ago"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(last_seen))} ({age})"
