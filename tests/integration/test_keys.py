"""Managed API keys through the real CLI, a real Redis and the real API."""

from __future__ import annotations

import json

import pytest

from tests.integration.helpers import API_KEY, create_key, keys_cli, models
from tests.stack import wait_until


def _everything_in_redis(client) -> bytes:
    """Every key name and value in Redis, concatenated (strings, hashes, lists, sets)."""
    out = []
    for name in client.scan_iter(count=1000):
        out.append(name)
        kind = client.type(name)
        if kind == b"string":
            out.append(client.get(name) or b"")
        elif kind == b"hash":
            for k, v in client.hgetall(name).items():
                out += [k, v]
        elif kind == b"list":
            out += client.lrange(name, 0, -1)
        elif kind in (b"set", b"zset"):
            out += list(client.smembers(name)) if kind == b"set" else client.zrange(name, 0, -1)
    return b"\n".join(out)


@pytest.mark.slow
def test_create_list_use_and_revoke_a_key(stack, api_url):
    key = create_key(stack, "alice", "--rpm", "600", "--tpm", "100000")
    assert key.startswith("es-") and len(key) > 30
    assert models(api_url, key) == 200
    assert models(api_url, API_KEY) == 200  # static keys keep working beside managed ones

    listed = keys_cli(stack, "list", "--json")
    assert listed.returncode == 0
    assert key not in listed.stdout
    alice = next(json.loads(line) for line in listed.stdout.splitlines() if json.loads(line)["name"] == "alice")
    assert key.startswith(alice["prefix"]) and len(alice["prefix"]) < 16
    assert (alice["rpm"], alice["tpm"]) == (600, 100000)
    assert alice["last_used"] is not None  # stamped by the request above

    table = keys_cli(stack, "list")
    assert "alice" in table.stdout and key not in table.stdout

    assert key.encode() not in _everything_in_redis(stack.redis.client())

    revoked = keys_cli(stack, "revoke", "alice")
    assert revoked.returncode == 0
    # The API caches lookups for a second: revoked keys stop working within a couple of seconds.
    wait_until(lambda: models(api_url, key) == 401, 5, "the revoked key to be refused")
    assert models(api_url, API_KEY) == 200


def test_names_are_unique_and_unknown_names_cannot_be_revoked(stack):
    create_key(stack, "bob")
    again = keys_cli(stack, "create", "--name", "bob")
    assert again.returncode != 0 and "already exists" in again.stderr and again.stdout == ""
    missing = keys_cli(stack, "revoke", "nobody-by-this-name")
    assert missing.returncode == 1 and "no key named" in missing.stderr
    assert keys_cli(stack, "revoke", "bob").returncode == 0


@pytest.mark.slow
def test_a_wrong_key_is_refused_with_401(api_url):
    assert models(api_url, "es-" + "x" * 43) == 401


@pytest.mark.parametrize("args, message", [
    (["--name", "has space"], "key name"),
    (["--name=-starts-with-dash"], "key name"),
    (["--name", "x" * 65], "key name"),
    (["--name", "neg-rpm", "--rpm", "-1"], "--rpm, --tpm and --max-queued-inputs"),
    (["--name", "neg-tpm", "--tpm", "-5"], "--rpm, --tpm and --max-queued-inputs"),
    (["--name", "neg-cap", "--max-queued-inputs", "-1"], "--rpm, --tpm and --max-queued-inputs"),
])
def test_bad_create_arguments_are_refused_with_a_message(stack, args, message):
    done = keys_cli(stack, "create", *args)
    assert done.returncode != 0 and message in done.stderr and done.stdout == ""
