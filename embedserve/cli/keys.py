"""`embedserve keys create|list|revoke|webhook`: manage API keys in the Redis named by EMBED_REDIS_URL."""

from __future__ import annotations

import argparse
import json
import sys
import time

from embedserve.apikeys import KeyStore, KeyStoreError
from embedserve.cli.errors import guarded
from embedserve.events import signing
from embedserve.redis_client import client_for
from embedserve.settings import Settings


def add_keys_parser(sub) -> None:
    """Attach `keys` and its subcommands to the top-level subparsers."""
    keys = sub.add_parser("keys", help="create, list and revoke managed API keys (stored as hashes in Redis)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="create a key and print it (it is shown only this once)")
    create.add_argument("--name", required=True, help="unique name, e.g. the user or team it is for")
    create.add_argument("--rpm", type=int, default=0, help="requests per minute (0 = unlimited)")
    create.add_argument("--tpm", type=int, default=0, help="tokens per minute (0 = unlimited)")
    create.add_argument("--max-queued-inputs", type=int, default=None,
                        help="inputs of queued and running jobs at once (0 = unlimited; default: the API's "
                             "EMBED_MAX_QUEUED_INPUTS_PER_KEY)")
    create.add_argument("--webhook-url", default=None, metavar="URL",
                        help="send the key's job and batch events here, signed (the secret is printed once); "
                             "private addresses only with EMBED_WEBHOOK_ALLOW_PRIVATE=true")
    create.set_defaults(run=_create)
    listing = actions.add_parser("list", help="names, prefixes, limits and last use (never the keys)")
    listing.add_argument("--json", action="store_true", help="one JSON object per key")
    listing.set_defaults(run=_list)
    revoke = actions.add_parser("revoke", help="revoke a key by name (the API refuses it within seconds)")
    revoke.add_argument("name")
    revoke.set_defaults(run=_revoke)
    webhook = actions.add_parser("webhook", help="set (with a new signing secret, printed once) or remove a key's "
                                                 "webhook endpoint")
    webhook.add_argument("name")
    target = webhook.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="the endpoint's http(s) URL")
    target.add_argument("--remove", action="store_true", help="send the key's events nowhere")
    webhook.set_defaults(run=_webhook)


def _store() -> KeyStore:
    return KeyStore(client_for(Settings.from_env(), socket_connect_timeout=5))


def _allow_private() -> bool:
    return Settings.from_env().webhook_allow_private


_guarded = guarded("keys", lambda: (_store(),), (KeyStoreError,))


@_guarded
def _create(store: KeyStore, args: argparse.Namespace) -> int:
    secret = signing.new_secret() if args.webhook_url is not None else None
    key, record = store.create(args.name, rpm=args.rpm, tpm=args.tpm, max_queued_inputs=args.max_queued_inputs,
                               webhook_url=args.webhook_url, webhook_secret=secret, allow_private=_allow_private())
    # The key alone on stdout (so KEY=$(embedserve keys create ...) works); the rest on stderr.
    print(key)
    print(f"created key '{record.name}' ({record.prefix}..., rpm={record.rpm or 'unlimited'}, "
          f"tpm={record.tpm or 'unlimited'}); it is not stored and will not be shown again", file=sys.stderr)
    if secret is not None:
        print(f"webhook signing secret (shown only this once): {secret}", file=sys.stderr)
    return 0


@_guarded
def _webhook(store: KeyStore, args: argparse.Namespace) -> int:
    if args.remove:
        store.remove_webhook(args.name)
        print(f"key '{args.name}' has no webhook endpoint now", file=sys.stderr)
        return 0
    secret = signing.new_secret()
    store.set_webhook(args.name, args.url, secret, allow_private=_allow_private())
    print(secret)  # alone on stdout, as a new key is: SECRET=$(embedserve keys webhook ...)
    print(f"key '{args.name}' sends its events to {args.url}, signed with the secret above "
          "(shown only this once)", file=sys.stderr)
    return 0


@_guarded
def _list(store: KeyStore, args: argparse.Namespace) -> int:
    records = store.list()
    if args.json:
        for r in records:
            print(json.dumps({"name": r.name, "prefix": r.prefix, "rpm": r.rpm, "tpm": r.tpm,
                              "max_queued_inputs": r.max_queued_inputs, "created": r.created,
                              "last_used": r.last_used, "webhook_url": r.webhook_url}))
        return 0
    print(f"{'NAME':<24} {'PREFIX':<13} {'RPM':>9} {'TPM':>11}  {'CREATED':<20} LAST USED")
    for r in records:
        print(f"{r.name:<24} {r.prefix + '...':<13} {r.rpm or '-':>9} {r.tpm or '-':>11}  "
              f"{_when(r.created):<20} {_when(r.last_used) if r.last_used else 'never'}")
    return 0


@_guarded
def _revoke(store: KeyStore, args: argparse.Namespace) -> int:
    if not store.revoke(args.name):
        print(f"embedserve keys: no key named '{args.name}'", file=sys.stderr)
        return 1
    print(f"revoked key '{args.name}'", file=sys.stderr)
    return 0


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
