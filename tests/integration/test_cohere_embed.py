"""Cohere's SDK (`cohere.ClientV2.embed`), pointed at us: /v2/embed gives what /v1/embeddings gives, by type."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from embedserve.defaults import TASK_INSTRUCTIONS
from tests.integration.helpers import API_KEY, MINILM, QWEN, embed, vectors

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

TEXTS = ["The capital of China is Beijing.", "Today is Friday.", "Ünïcödé, emoji 🚀 and 中文 text."]
LONG = "token " * 300 + "the end " * 300  # past MiniLM's 256 tokens, with different words at each end
ALL_TYPES = ["float", "int8", "uint8", "binary", "ubinary", "base64"]


@pytest.fixture
def co(api_url):
    import cohere
    import httpx

    with httpx.Client(timeout=120) as transport:  # ours, so its sockets are closed when the test ends
        yield cohere.ClientV2(api_key=API_KEY, base_url=api_url, httpx_client=transport, max_retries=0)


def as_array(rows, dtype) -> np.ndarray:
    return np.array(rows, dtype=dtype)


def test_every_type_in_one_call_matches_v1_embeddings(co, http):
    reply = co.embed(model=MINILM, texts=TEXTS, input_type="search_document", embedding_types=ALL_TYPES)
    got = reply.embeddings
    floats = as_array(got.float_, np.float32)
    v1 = embed(http, model=MINILM, input=TEXTS)
    np.testing.assert_allclose(floats, vectors(v1), atol=1e-6)
    assert reply.meta.billed_units.input_tokens == v1.json()["usage"]["prompt_tokens"]
    assert reply.texts == TEXTS and reply.response_type == "embeddings_by_type"
    # The packed types are the float vector's sign bits, bit-exact; binary is ubinary - 128.
    ubinary = as_array(got.ubinary, np.int64)
    assert (ubinary == np.packbits(floats > 0, axis=1)).all()
    assert (as_array(got.binary, np.int64) == ubinary - 128).all()
    # The scalar types are what /v1/embeddings' embedding_type gives for the same texts.
    for kind in ("int8", "uint8"):
        ours = embed(http, model=MINILM, input=TEXTS, embedding_type=kind, encoding_format="float")
        assert ours.status_code == 200, ours.text
        assert getattr(got, kind) == [item["embedding"] for item in ours.json()["data"]], kind
    # Cohere's base64: the float vector's little-endian float32 bytes.
    decoded = np.stack([np.frombuffer(base64.b64decode(row), dtype="<f4") for row in got.base64])
    assert (decoded == floats).all()


def test_response_holds_exactly_the_asked_types(http):
    response = http.post(http.base + "/v2/embed", json={"model": MINILM, "texts": ["a"], "input_type":
                                                        "clustering", "embedding_types": ["ubinary", "float"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body["embeddings"]) == ["ubinary", "float"]
    assert set(body) == {"id", "embeddings", "texts", "meta", "response_type"}
    assert body["meta"]["api_version"] == {"version": "2"}
    assert len(body["embeddings"]["ubinary"][0]) == 384 // 8
    default = http.post(http.base + "/v2/embed", json={"model": MINILM, "texts": ["a"],
                                                       "input_type": "search_query"}).json()
    assert list(default["embeddings"]) == ["float"]  # Cohere's default type


def test_output_dimension_is_dimensions(co, http):
    reply = co.embed(model=QWEN, texts=TEXTS, input_type="search_document", output_dimension=32,
                     embedding_types=["float", "ubinary"])
    floats = as_array(reply.embeddings.float_, np.float32)
    assert floats.shape == (3, 32) and as_array(reply.embeddings.ubinary, np.int64).shape == (3, 4)
    np.testing.assert_allclose(floats, vectors(embed(http, model=QWEN, input=TEXTS, dimensions=32)), atol=1e-6)


@pytest.mark.parametrize("input_type, ours", [
    ("search_query", {"input_type": "query"}),
    ("search_document", {"input_type": "document"}),
    ("classification", {"input_type": "query", "instruction": TASK_INSTRUCTIONS["classification"]}),
    ("clustering", {"input_type": "query", "instruction": TASK_INSTRUCTIONS["clustering"]}),
])
def test_input_types_on_qwen3(co, http, input_type, ours):
    reply = co.embed(model=QWEN, texts=TEXTS, input_type=input_type, embedding_types=["float"])
    expected = vectors(embed(http, model=QWEN, input=TEXTS, **ours))
    np.testing.assert_allclose(as_array(reply.embeddings.float_, np.float32), expected, atol=1e-6)


def test_truncate_end_start_none(co, http):
    import cohere

    def floats(**kwargs):
        reply = co.embed(model=MINILM, texts=["fine", LONG], input_type="search_document", embedding_types=["float"],
                         **kwargs)
        return as_array(reply.embeddings.float_, np.float32)

    end = floats()  # Cohere's default, END
    np.testing.assert_allclose(end, vectors(embed(http, model=MINILM, input=["fine", LONG], truncate=True)),
                               atol=1e-6)
    np.testing.assert_allclose(floats(truncate="END"), end, atol=1e-6)
    start = floats(truncate="START")
    left = embed(http, model=MINILM, input=["fine", LONG], truncate=True, truncation_direction="left")
    np.testing.assert_allclose(start, vectors(left), atol=1e-6)
    assert float(start[1] @ end[1]) < 0.99  # a different end of the text was kept
    with pytest.raises(cohere.BadRequestError) as info:
        floats(truncate="NONE")
    body = info.value.body
    assert body["error"]["code"] == "context_length_exceeded" and body["error"]["param"] == "texts"
    assert body["message"] == body["error"]["message"] and body["message"].startswith("texts[1] is ")


def test_max_tokens_cuts_or_refuses_each_text(co):
    import cohere

    reply = co.embed(model=MINILM, texts=[LONG, LONG], input_type="search_document", embedding_types=["float"],
                     max_tokens=8)
    assert reply.meta.billed_units.input_tokens == 16  # [CLS], 6 tokens of text, [SEP]; twice
    with pytest.raises(cohere.BadRequestError) as info:
        co.embed(model=MINILM, texts=["fine", "a b c d e f g h i j"], input_type="search_document",
                 embedding_types=["float"], max_tokens=8, truncate="NONE")
    assert info.value.body["error"]["param"] == "texts"
    assert info.value.body["message"].startswith("texts[1] is 12 tokens, more than the request's max_tokens of 8")


@pytest.mark.parametrize("max_tokens", [2**64, 1e300])
def test_max_tokens_past_any_model_is_the_model_s_maximum(http, max_tokens):
    """Found by schemathesis: a max_tokens no 64-bit integer holds failed to serialize for the worker (a 500)."""
    body = {"model": MINILM, "texts": ["fine", LONG], "input_type": "search_document", "max_tokens": max_tokens}
    response = http.post(http.base + "/v2/embed", json=body, timeout=120)
    assert response.status_code == 200, response.text[:500]
    assert response.json()["meta"]["billed_units"]["input_tokens"] == 3 + 256  # LONG cut at MiniLM's maximum
    refused = http.post(http.base + "/v2/embed", json={**body, "truncate": "NONE"}, timeout=120)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "context_length_exceeded"
    assert "this model's maximum of 256" in refused.json()["message"]


@pytest.mark.parametrize("kwargs, param", [
    ({"embedding_types": ["float", "float16"]}, "embedding_types"),
    ({"input_type": "image"}, "input_type"),
    ({"input_type": None}, "input_type"),
    ({"truncate": "MIDDLE"}, "truncate"),
    ({"output_dimension": 0}, "output_dimension"),
    ({"output_dimension": 385}, "output_dimension"),
    ({"images": ["data:image/png;base64,iVBORw0KGgo="]}, "images"),
])
def test_bad_requests_raise_the_sdk_s_bad_request_error(co, kwargs, param):
    import cohere

    args = {"model": MINILM, "texts": TEXTS, "input_type": "search_document", "embedding_types": ["float"], **kwargs}
    with pytest.raises(cohere.BadRequestError) as info:
        co.embed(**args)
    body = info.value.body
    assert info.value.status_code == 400 and body["error"]["param"] == param, body
    assert body["message"] == body["error"]["message"] and body["error"]["type"] == "invalid_request_error"


def test_missing_input_type_is_refused_as_on_cohere(http):
    response = http.post(http.base + "/v2/embed", json={"model": MINILM, "texts": TEXTS})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input_type"
    assert response.json()["message"] == "Missing required parameter: 'input_type'."


def test_unknown_model_and_bad_key(co, api_url):
    import cohere
    import httpx

    with pytest.raises(cohere.NotFoundError) as info:
        co.embed(model="no-such-model", texts=TEXTS, input_type="search_query", embedding_types=["float"])
    assert info.value.body["error"]["code"] == "model_not_found" and "no-such-model" in info.value.body["message"]
    with httpx.Client(timeout=60) as transport:
        stranger = cohere.ClientV2(api_key="not-a-key", base_url=api_url, httpx_client=transport, max_retries=0)
        with pytest.raises(cohere.UnauthorizedError) as info:
            stranger.embed(model=MINILM, texts=TEXTS, input_type="search_query", embedding_types=["float"])
    assert info.value.body["error"]["code"] == "invalid_api_key" and info.value.body["message"]
