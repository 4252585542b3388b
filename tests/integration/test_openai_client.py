"""The official openai client works unchanged against the service."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.integration.helpers import API_KEY, MINILM

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)


@pytest.fixture
def client(api_url):
    return openai.OpenAI(base_url=api_url + "/v1", api_key=API_KEY, max_retries=0)


def test_default_call_uses_base64_and_decodes(client):
    result = client.embeddings.create(model=MINILM, input=["hello world", "goodbye"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 384
    assert abs(np.linalg.norm(result.data[0].embedding) - 1) < 1e-5
    assert result.usage.prompt_tokens > 0 and result.model == MINILM


def test_float_format_matches_default(client):
    default = client.embeddings.create(model=MINILM, input="hello world").data[0].embedding
    as_float = client.embeddings.create(model=MINILM, input="hello world", encoding_format="float").data[0].embedding
    assert np.allclose(default, as_float, atol=1e-7)


def test_dimensions(client):
    result = client.embeddings.create(model=MINILM, input="hello", dimensions=128)
    assert len(result.data[0].embedding) == 128


def test_token_ids(client):
    result = client.embeddings.create(model=MINILM, input=[[101, 7592, 2088, 102], [101, 102]])
    assert [d.index for d in result.data] == [0, 1]


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert MINILM in ids


def test_bad_request_raises_badrequesterror(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MINILM, input="")
    assert info.value.status_code == 400


def test_wrong_key_raises_authenticationerror(api_url):
    bad = openai.OpenAI(base_url=api_url + "/v1", api_key="not-a-valid-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model=MINILM, input="hello")


def test_unknown_model_raises_notfounderror(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="no-such-model", input="hello")
    assert info.value.code == "model_not_found"
