"""Pure helpers of the operations features: reset durations, token estimates, queue lists, JSON logs."""

from __future__ import annotations

import json
import logging

import pytest

from api.admission import estimate_tokens
from api.ratelimit import Decision, openai_duration
from api.validation.embeddings import EmbeddingRequest
from embedserve.fleet.forward_stats import _bucket
from embedserve.logs import JsonFormatter, RequestIdFilter, request_context
from embedserve.queues import queue_lists


@pytest.mark.parametrize("ms, text", [(0, "0ms"), (120, "120ms"), (1000, "1s"), (1500, "1.5s"),
                                      (59_999, "59.999s"), (60_000, "1m0s"), (361_000, "6m1s")])
def test_reset_durations_read_like_openai(ms, text):
    assert openai_duration(ms) == text


def test_headers_only_for_limited_dimensions():
    only_requests = Decision(True, rpm=10, tpm=0, requests_left=9, requests_reset_ms=6000, tokens_left=-1,
                             tokens_reset_ms=0, retry_after_s=0).headers()
    assert only_requests == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
                             "x-ratelimit-reset-requests": "6s"}


@pytest.mark.parametrize("inputs, max_length, expected", [
    (["abcd"], 512, 1),
    (["abcde"], 512, 2),  # rounded up
    (["a"], 512, 1),
    (["x" * 4000], 512, 512),  # never more than the model reads per input
    (["x" * 40, "y" * 8], 0, 12),  # unknown max length: no cap
    ([[1, 2, 3], [4]], 512, 4),  # token ids: their count
    ([[1] * 600], 512, 512),
])
def test_token_estimate(inputs, max_length, expected):
    assert estimate_tokens(EmbeddingRequest(inputs=inputs, model=None), max_length) == expected


def test_queue_lists_cover_every_kombu_priority_step():
    lists = queue_lists("embed.m")
    assert lists[0] == "embed.m" and len(lists) == 4
    assert all(name.startswith("embed.m\x06\x16") for name in lists[1:])


@pytest.mark.parametrize("value, bucket", [(1, "1"), (3, "4"), (256, "256"), (257, "+Inf")])
def test_batch_rows_bucket(value, bucket):
    from embedserve import defaults

    assert _bucket(value, defaults.BATCH_ROWS_BUCKETS) == bucket


def test_json_log_line_carries_the_request_id():
    record = logging.LogRecord("embedserve.x", logging.INFO, __file__, 1, "did %s", ("it",), None)
    with request_context("req-42"):
        RequestIdFilter().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "did it" and entry["request_id"] == "req-42" and entry["level"] == "INFO"
    outside = logging.LogRecord("embedserve.x", logging.INFO, __file__, 1, "m", (), None)
    RequestIdFilter().filter(outside)
    assert json.loads(JsonFormatter().format(outside))["request_id"] is None
