"""EMBED_METRICS_TOKEN (embedserve/settings.py): read from the environment, never printed."""

from __future__ import annotations

from embedserve.settings import Settings


def test_metrics_token_is_read_and_off_by_default():
    assert Settings.from_env({}).metrics_token == ""
    assert Settings.from_env({"EMBED_METRICS_TOKEN": "  scrape-secret-77  "}).metrics_token == "scrape-secret-77"


def test_repr_redacts_the_metrics_token():
    # Settings are logged at start: the token must not reach the logs.
    text = repr(Settings.from_env({"EMBED_METRICS_TOKEN": "scrape-secret-77"}))
    assert "scrape-secret-77" not in text and "metrics_token='<redacted>'" in text
