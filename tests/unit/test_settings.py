"""Settings: defaults, parsing, and clear errors for bad values."""

from __future__ import annotations

import pytest

from embedserve.settings import ConfigError, Settings


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
])
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env)


def test_repr_redacts_secrets():
    settings = Settings.from_env({"EMBED_API_KEYS": "supersecret-key", "EMBED_REDIS_URL": "redis://:hunter22@r:6379/0"})
    text = repr(settings)
    assert "supersecret" not in text and "hunter22" not in text
    assert "***" in text


@pytest.mark.parametrize("env,device,expected", [
    ({}, "cpu", 1024),  # small batches are faster per text on a CPU
    ({}, "cuda", 16384),
    ({"EMBED_MAX_BATCH_TOKENS": "4096"}, "cpu", 4096),  # an explicit budget wins on every device
    ({"EMBED_MAX_BATCH_TOKENS": "4096"}, "cuda", 4096),
])
def test_batch_token_budget_by_device(env, device, expected):
    assert Settings.from_env(env).batch_tokens(device) == expected


def test_negative_batch_token_budget_is_refused():
    with pytest.raises(ConfigError, match="EMBED_MAX_BATCH_TOKENS"):
        Settings.from_env({"EMBED_MAX_BATCH_TOKENS": "-1"})
