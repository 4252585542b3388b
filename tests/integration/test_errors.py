"""The bad-input table: every row gets its status and an OpenAI-shaped error, never a 500."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.helpers import API_KEY, MINILM, assert_openai_error, embed

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

JSON = {"Content-Type": "application/json"}

# (case id, body as bytes or JSON-able, extra headers, status, error code or None, param or None)
BODY_CASES = [
    ("empty-string", {"model": MINILM, "input": ""}, 400, None, "input"),
    ("empty-list", {"model": MINILM, "input": []}, 400, None, "input"),
    ("empty-string-in-list", {"model": MINILM, "input": ["ok", ""]}, 400, None, "input"),
    ("input-missing", {"model": MINILM}, 400, None, "input"),
    ("input-null", {"model": MINILM, "input": None}, 400, None, "input"),
    ("input-number", {"model": MINILM, "input": 5}, 400, None, "input"),
    ("input-object", {"model": MINILM, "input": {"text": "hi"}}, 400, None, "input"),
    ("mixed-types", {"model": MINILM, "input": ["text", 5]}, 400, None, "input"),
    ("list-of-objects", {"model": MINILM, "input": [{"a": 1}]}, 400, None, "input"),
    ("negative-token", {"model": MINILM, "input": [[101, -1, 102]]}, 400, None, "input"),
    ("float-token", {"model": MINILM, "input": [101, 1.5, 102]}, 400, None, "input"),
    ("bool-token", {"model": MINILM, "input": [[True, False]]}, 400, None, "input"),
    ("empty-token-list", {"model": MINILM, "input": [[101], []]}, 400, None, "input"),
    ("token-out-of-vocab", {"model": MINILM, "input": [101, 999999, 102]}, 400, "invalid_token_id", "input"),
    ("too-many-inputs", {"model": MINILM, "input": ["x"] * 2049}, 400, "too_many_inputs", "input"),
    ("too-long", {"model": MINILM, "input": "word " * 1000}, 400, "context_length_exceeded", "input"),
    ("too-long-token-ids", {"model": MINILM, "input": [101] * 1000}, 400, "context_length_exceeded", "input"),
    ("lone-surrogate", b'{"model": "%s", "input": "bad \\ud800 text"}' % MINILM.encode(), 400, None, "input"),
    ("model-not-string", {"model": 123, "input": "hi"}, 400, None, "model"),
    ("model-empty", {"model": "", "input": "hi"}, 400, None, "model"),
    ("unknown-model", {"model": "text-embedding-3-large", "input": "hi"}, 404, "model_not_found", "model"),
    ("bad-encoding-format", {"model": MINILM, "input": "hi", "encoding_format": "binary"}, 400, None, "encoding_format"),
    ("dimensions-zero", {"model": MINILM, "input": "hi", "dimensions": 0}, 400, None, "dimensions"),
    ("dimensions-string", {"model": MINILM, "input": "hi", "dimensions": "64"}, 400, None, "dimensions"),
    ("dimensions-bool", {"model": MINILM, "input": "hi", "dimensions": True}, 400, None, "dimensions"),
    ("dimensions-too-big", {"model": MINILM, "input": "hi", "dimensions": 385}, 400, None, "dimensions"),
    ("bad-input-type", {"model": MINILM, "input": "hi", "input_type": "passage"}, 400, None, "input_type"),
    ("bad-truncate", {"model": MINILM, "input": "hi", "truncate": "yes"}, 400, None, "truncate"),
    ("bad-instruction", {"model": MINILM, "input": "hi", "instruction": 5}, 400, None, "instruction"),
    ("bad-user", {"model": MINILM, "input": "hi", "user": 5}, 400, None, "user"),
    ("body-is-array", [MINILM, "hi"], 400, None, None),
    ("malformed-json", b'{"model": "x", "input": ', 400, None, None),
    ("deeply-nested", b"[" * 100000 + b"]" * 100000, 400, None, None),
    ("invalid-utf8", b'{"model": "all-MiniLM-L6-v2", "input": "\xff\xfe"}', 400, None, None),
    ("empty-body", b"", 400, None, None),
]


@pytest.mark.parametrize("body,status,code,param", [c[1:] for c in BODY_CASES], ids=[c[0] for c in BODY_CASES])
def test_bad_bodies(http, body, status, code, param):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = http.post(http.base + "/v1/embeddings", data=data, headers=JSON, timeout=60)
    assert_openai_error(response, status, code, param)


def test_not_json_content_type_is_415(http):
    response = http.post(http.base + "/v1/embeddings", data="input=hi", headers={"Content-Type": "text/plain"})
    assert_openai_error(response, 415)


def test_body_over_limit_is_413(http):
    big = b'{"model": "all-MiniLM-L6-v2", "input": "' + b"a" * (33 * 1024 * 1024) + b'"}'
    response = http.post(http.base + "/v1/embeddings", data=big, headers=JSON, timeout=60)
    assert_openai_error(response, 413)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong-key-123", "wrong-key-123",
                                    f"Basic {API_KEY}x"], ids=["absent", "empty", "bearer-only", "wrong-bearer",
                                                               "wrong-bare", "other-scheme"])
def test_bad_auth_is_401(api_url, header):
    headers = dict(JSON)
    if header is not None:
        headers["Authorization"] = header
    response = requests.post(api_url + "/v1/embeddings", json={"model": MINILM, "input": "hi"}, headers=headers)
    error = assert_openai_error(response, 401)
    assert error["code"] in ("invalid_api_key", "missing_api_key")


def test_bare_key_without_bearer_is_accepted(api_url):
    response = requests.post(api_url + "/v1/embeddings", json={"model": MINILM, "input": "hi"},
                             headers={"Authorization": API_KEY})
    assert response.status_code == 200


def test_models_need_auth(api_url):
    assert_openai_error(requests.get(api_url + "/v1/models"), 401)


def test_wrong_method_is_405(http):
    response = http.get(http.base + "/v1/embeddings")
    assert_openai_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_unknown_route_is_404_json(http):
    assert_openai_error(http.get(http.base + "/v1/nothing-here"), 404)


def test_a_request_line_over_gunicorns_limit_is_a_json_414(http):
    error = assert_openai_error(http.get(http.base + "/v1/models?q=" + "x" * 5000), 414)
    assert error["code"] == "request_line_too_long"


def test_headers_over_gunicorns_limit_are_a_json_431(http):
    too_many = {f"x-pad-{i}": "y" for i in range(120)}  # gunicorn takes at most 100 header fields
    error = assert_openai_error(http.get(http.base + "/v1/models", headers=too_many), 431)
    assert error["code"] == "headers_too_large"


def test_malformed_http_is_a_json_400(api_url):
    host, port = urlsplit(api_url).hostname, urlsplit(api_url).port
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"GET /v1/models HTTP/9.9\r\nHost: x\r\n\r\n")
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Content-Type: application/json" in head, raw[:300]
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "malformed_http_request"


def test_good_request_after_the_table(http):
    response = embed(http, model=MINILM, input=["still works"])
    assert response.status_code == 200
    assert len(response.json()["data"]) == 1
