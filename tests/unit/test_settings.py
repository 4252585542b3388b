"""Settings: defaults, parsing, and clear errors for bad values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from embedserve.settings import ConfigError, SentinelURL, Settings, parse_sentinel_url
from tests.stack import ROOT


def test_defaults():
    settings = Settings.from_env({})
    assert settings.port == 8000 and settings.device == "auto"
    assert settings.served_model_name == "all-MiniLM-L6-v2"
    assert settings.served_aliases == ("sentence-transformers/all-MiniLM-L6-v2",)
    assert settings.max_body_bytes == 32 * 1024 * 1024


def test_hub_id_gives_name_and_alias():
    settings = Settings.from_env({"EMBED_MODEL": "Qwen/Qwen3-Embedding-0.6B", "EMBED_MODEL_ALIASES": "a, b,"})
    assert settings.served_model_name == "Qwen3-Embedding-0.6B"
    assert settings.served_aliases == ("a", "b", "Qwen/Qwen3-Embedding-0.6B")


def test_explicit_name_wins():
    assert Settings.from_env({"EMBED_MODEL": "/models/x", "EMBED_MODEL_NAME": "mine"}).served_model_name == "mine"


@pytest.mark.parametrize("env,needle", [
    ({"EMBED_PORT": "eighty"}, "EMBED_PORT"),
    ({"EMBED_PORT": "70000"}, "EMBED_PORT"),
    ({"EMBED_DEVICE": "tpu"}, "EMBED_DEVICE"),
    ({"EMBED_DTYPE": "int4"}, "EMBED_DTYPE"),
    ({"EMBED_SYNC_TIMEOUT": "soon"}, "EMBED_SYNC_TIMEOUT"),
    ({"EMBED_REDIS_URL": "http://localhost"}, "EMBED_REDIS_URL"),
    ({"EMBED_MODEL_NAME": "bad name"}, "model name"),
    ({"EMBED_API_KEYS": "short"}, "EMBED_API_KEYS"),
    ({"EMBED_VISIBILITY_TIMEOUT": "60", "EMBED_TASK_TIME_LIMIT": "120"}, "EMBED_VISIBILITY_TIMEOUT"),
    ({"EMBED_LOG_LEVEL": "LOUD"}, "EMBED_LOG_LEVEL"),
    ({"EMBED_ACCEPT_TOKEN_IDS": "maybe"}, "EMBED_ACCEPT_TOKEN_IDS"),
    ({"EMBED_BULK_MIN_SHARE": "1"}, "EMBED_BULK_MIN_SHARE"),  # all of it would be bulk first, sync starved
    ({"EMBED_BULK_MIN_SHARE": "-0.1"}, "EMBED_BULK_MIN_SHARE"),
])
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env)


@pytest.mark.parametrize("raw,expected", [(None, True), ("true", True), ("1", True), ("false", False),
                                          ("FALSE", False), ("0", False), ("no", False)])
def test_accept_token_ids(raw, expected):
    env = {} if raw is None else {"EMBED_ACCEPT_TOKEN_IDS": raw}
    assert Settings.from_env(env).accept_token_ids is expected


def test_bulk_min_share_defaults_to_a_tenth_and_zero_means_sync_always_first():
    assert Settings.from_env({}).bulk_min_share == 0.1
    assert Settings.from_env({"EMBED_BULK_MIN_SHARE": "0"}).bulk_min_share == 0.0


def test_repr_redacts_secrets():
    settings = Settings.from_env({"EMBED_API_KEYS": "supersecret-key", "EMBED_REDIS_URL": "redis://:hunter22@r:6379/0"})
    text = repr(settings)
    assert "supersecret" not in text and "hunter22" not in text
    assert "***" in text


def test_reranker_settings():
    settings = Settings.from_env({"EMBED_RERANK_MODEL": "Qwen/Qwen3-Reranker-0.6B", "EMBED_WORKER_ROLE": "Rerank",
                                  "EMBED_RERANK_MODEL_ALIASES": "reranker"})
    assert settings.worker_role == "rerank"
    assert settings.served_rerank_name == "Qwen3-Reranker-0.6B"
    assert settings.served_rerank_aliases == ("reranker", "Qwen/Qwen3-Reranker-0.6B")
    assert Settings.from_env({"EMBED_RERANK_MODEL": "/m/x", "EMBED_RERANK_MODEL_NAME": "r"}).served_rerank_name == "r"
    assert Settings.from_env({}).worker_role == "embed"


@pytest.mark.parametrize("env,needle", [
    ({"EMBED_WORKER_ROLE": "rerank"}, "EMBED_RERANK_MODEL"),
    ({"EMBED_WORKER_ROLE": "chat"}, "EMBED_WORKER_ROLE"),
    ({"EMBED_RERANK_MODEL": "/m/x", "EMBED_RERANK_MODEL_NAME": "all-MiniLM-L6-v2"}, "must differ"),
    ({"EMBED_RERANK_MODEL": "/m/x", "EMBED_RERANK_MODEL_NAME": "bad name"}, "EMBED_RERANK_MODEL_NAME"),
])
def test_bad_reranker_settings(env, needle):
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env)


@pytest.mark.parametrize("command", [["-m", "embedserve.cli.main", "worker", "--rerank"], ["-m", "worker", "--rerank"]],
                         ids=["embedserve-worker", "python-m-worker"])
def test_rerank_flag_selects_the_reranker(command):
    """`--rerank` makes the worker serve EMBED_RERANK_MODEL: without one it stops at once, naming it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBED_")}
    result = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "needs EMBED_RERANK_MODEL" in result.stderr


@pytest.mark.parametrize("env,device,packed,expected", [
    ({}, "cpu", False, 1024),  # small padded batches are faster per text on a CPU
    ({}, "cpu", True, 2048),  # packed: no padding grows with the batch
    ({}, "cuda", False, 16384),
    ({"EMBED_MAX_BATCH_TOKENS": "4096"}, "cpu", True, 4096),  # an explicit budget wins on every device
    ({"EMBED_MAX_BATCH_TOKENS": "4096"}, "cuda", False, 4096),
])
def test_batch_token_budget_by_device(env, device, packed, expected):
    assert Settings.from_env(env).batch_tokens(device, packed=packed) == expected


def test_negative_batch_token_budget_is_refused():
    with pytest.raises(ConfigError, match="EMBED_MAX_BATCH_TOKENS"):
        Settings.from_env({"EMBED_MAX_BATCH_TOKENS": "-1"})


def test_sentinel_url_names_sentinels_master_db_and_the_masters_login():
    where = parse_sentinel_url("sentinel://:p%40ss@s1:26379,s2:26380,s3,[::1]:26381/mymaster/2")
    assert where.sentinels == (("s1", 26379), ("s2", 26380), ("s3", 26379), ("::1", 26381))
    assert (where.master, where.db, where.username, where.password) == ("mymaster", 2, None, "p@ss")
    assert parse_sentinel_url("sentinel://app:pw@s1/mymaster") == SentinelURL((("s1", 26379),), "mymaster", 0, "app", "pw")


@pytest.mark.parametrize("url, needle", [
    ("sentinel://s1:26379", "name the master"),
    ("sentinel:///mymaster/0", "address is empty"),
    ("sentinel://s1,,s2/mymaster", "address is empty"),
    ("sentinel://s1:99999/mymaster", "out of range"),
    ("sentinel://s1:port/mymaster", "not a host"),
    ("sentinel://s1/mymaster/zero", "database number"),
    ("sentinel://s1/mymaster/0/extra", "database number"),
    ("sentinel://s1/mymaster/0?ssl=true", "query"),
])
def test_a_malformed_sentinel_url_is_a_config_error_that_shows_the_form(url, needle):
    with pytest.raises(ConfigError, match="EMBED_REDIS_URL") as error:
        Settings.from_env({"EMBED_REDIS_URL": url})
    assert needle in str(error.value) and "sentinel://" in str(error.value)


def test_wait_for_replicas_defaults_on_with_sentinel_and_off_without():
    assert Settings.from_env({}).redis_wait_replicas == 0
    sentinel = Settings.from_env({"EMBED_REDIS_URL": "sentinel://s1/mymaster"})
    assert sentinel.redis_wait_replicas == 1 and sentinel.redis_wait_timeout_ms == 1000
    assert Settings.from_env({"EMBED_REDIS_URL": "sentinel://s1/mymaster",
                              "EMBED_REDIS_WAIT_REPLICAS": "0"}).redis_wait_replicas == 0
    assert Settings.from_env({"EMBED_REDIS_WAIT_REPLICAS": "2"}).redis_wait_replicas == 2
    with pytest.raises(ConfigError, match="EMBED_REDIS_WAIT_TIMEOUT_MS"):
        Settings.from_env({"EMBED_REDIS_WAIT_TIMEOUT_MS": "60000"})  # must stay under the worker's socket timeout


def test_repr_redacts_the_sentinel_passwords():
    text = repr(Settings.from_env({"EMBED_REDIS_URL": "sentinel://:masterpw@s1,s2/mymaster/0",
                                   "EMBED_REDIS_SENTINEL_PASSWORD": "sentinelpw"}))
    assert "masterpw" not in text and "sentinelpw" not in text


@pytest.mark.parametrize(("env", "message"), [
    ({"EMBED_CACHE_SCOPE": "team"}, "EMBED_CACHE_SCOPE must be key or global"),
    ({"EMBED_CACHE_URL": "http://cache:6379"}, "EMBED_CACHE_URL must be a redis://"),
    ({"EMBED_CACHE_URL": "redis://127.0.0.1:6379/0"}, "not EMBED_REDIS_URL's"),
])
def test_bad_cache_settings_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_cache_settings():
    settings = Settings.from_env({"EMBED_CACHE_URL": "redis://:hunter2pw@cache:6380/0", "EMBED_CACHE_SCOPE": "GLOBAL"})
    assert settings.cache_scope == "global" and "hunter2pw" not in repr(settings)
    assert Settings.from_env({}).cache_url == "" and Settings.from_env({}).cache_scope == "key"
