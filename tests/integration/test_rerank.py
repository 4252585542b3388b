"""/v1/rerank through the real stack: tiny Qwen3-Reranker and cross-encoder workers vs. their reference formulas."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import requests

from tests.fixtures.tiny_models import reference_cross_encoder_scores, reference_qwen3_rerank_scores
from tests.integration.helpers import (
    API_KEY,
    CROSS_ENCODER,
    MINILM,
    QUERY,
    QWEN_RERANKER,
    QWEN_RERANKER_ALIAS,
    assert_openai_error,
    rerank,
)
from tests.stack import ROOT, wait_until

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

DOCS = ["The cat reads the document quickly.", "A dog ranks many passages.", "",
        "My friend writes a query with care. " * 3, "The library publishes a scientific paper before dinner."]
LONG_DOC = "the teacher explains the history book with great enthusiasm " * 120  # > 512 tokens
TOLERANCE = 1e-4  # the tiny Qwen3 reranker's scores differ by ~0.003 between documents


def scores_by_index(response: requests.Response) -> np.ndarray:
    """The response's scores put back in document order (checks the results are a sorted permutation)."""
    assert response.status_code == 200, response.text[:500]
    results = response.json()["results"]
    values = [r["relevance_score"] for r in results]
    assert values == sorted(values, reverse=True)
    out = np.full(len(results), np.nan)
    for r in results:
        out[r["index"]] = r["relevance_score"]
    assert not np.isnan(out).any()
    return out


REFERENCES = {QWEN_RERANKER: reference_qwen3_rerank_scores, CROSS_ENCODER: reference_cross_encoder_scores}


@pytest.mark.parametrize("model", [QWEN_RERANKER, CROSS_ENCODER])
def test_scores_equal_the_reference(http, rerankers, model):
    response = rerank(http, model=model, query=QUERY, documents=DOCS)
    body = response.json()
    ours = scores_by_index(response)
    expected = np.array(REFERENCES[model](rerankers[model], QUERY, DOCS))
    np.testing.assert_allclose(ours, expected, atol=TOLERANCE, rtol=0)
    assert [r["index"] for r in body["results"]] == list(np.argsort(-expected, kind="stable"))
    assert body["object"] == "rerank" and body["model"] == model and body["id"]
    assert body["usage"]["total_tokens"] > 0
    assert all("document" not in r for r in body["results"])  # return_documents defaults to false


def test_instruction_reaches_the_qwen3_prompt(http, rerankers):
    instruction = "Judge whether the passage mentions an animal"
    ours = scores_by_index(rerank(http, model=QWEN_RERANKER_ALIAS, query=QUERY, documents=DOCS,
                                  instruction=instruction))
    expected = np.array(reference_qwen3_rerank_scores(rerankers[QWEN_RERANKER], QUERY, DOCS, instruction=instruction))
    np.testing.assert_allclose(ours, expected, atol=TOLERANCE, rtol=0)
    default = np.array(reference_qwen3_rerank_scores(rerankers[QWEN_RERANKER], QUERY, DOCS))
    assert np.abs(ours - default).max() > 10 * TOLERANCE  # the instruction really changed the input


def test_many_documents_split_into_chunks_keep_their_indexes(http, rerankers):
    docs = [f"{DOCS[i % len(DOCS)]} number {i}" for i in range(300)]  # two chunks (MAX_SYNC_CHUNK = 256)
    ours = scores_by_index(rerank(http, model=QWEN_RERANKER, query=QUERY, documents=docs))
    expected = np.array(reference_qwen3_rerank_scores(rerankers[QWEN_RERANKER], QUERY, docs))
    np.testing.assert_allclose(ours, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("model", [QWEN_RERANKER, CROSS_ENCODER])
def test_truncate_scores_the_cut_pair(http, rerankers, model):
    docs = [LONG_DOC, DOCS[0]]
    ours = scores_by_index(rerank(http, model=model, query=QUERY, documents=docs, truncate=True))
    # The references always truncate to the model's 512 tokens, cutting the document's end.
    np.testing.assert_allclose(ours, REFERENCES[model](rerankers[model], QUERY, docs), atol=TOLERANCE, rtol=0)


def test_top_n_and_return_documents(http, rerankers):
    full = rerank(http, model=CROSS_ENCODER, query=QUERY, documents=DOCS).json()["results"]
    top = rerank(http, model=CROSS_ENCODER, query=QUERY, documents=DOCS, top_n=2, return_documents=True)
    assert top.status_code == 200, top.text[:500]
    results = top.json()["results"]
    assert [r["index"] for r in results] == [r["index"] for r in full[:2]]
    assert [r["document"] for r in results] == [{"text": DOCS[r["index"]]} for r in results]
    everything = rerank(http, model=CROSS_ENCODER, query=QUERY, documents=DOCS, top_n=50).json()["results"]
    assert len(everything) == len(DOCS)


def test_jina_and_cohere_shapes(http, rerankers):
    """Jina sends document objects; Cohere v1/v2 add fields we accept and ignore. `/rerank` works too."""
    plain = scores_by_index(rerank(http, model=CROSS_ENCODER, query=QUERY, documents=DOCS))
    jina = rerank(http, path="/rerank", model=CROSS_ENCODER, query=QUERY, documents=[{"text": d} for d in DOCS],
                  top_n=3, return_documents=True)
    assert jina.status_code == 200, jina.text[:500]
    assert [r["document"]["text"] for r in jina.json()["results"]] == \
        [DOCS[i] for i in np.argsort(-plain, kind="stable")[:3]]
    cohere = rerank(http, model=CROSS_ENCODER, query=QUERY, documents=DOCS, top_n=2, max_chunks_per_doc=10,
                    max_tokens_per_doc=4096, rank_fields=["text"])
    assert cohere.status_code == 200, cohere.text[:500]
    assert cohere.json()["meta"]["billed_units"]["search_units"] == 1
    assert [r["relevance_score"] for r in cohere.json()["results"]] == sorted(plain, reverse=True)[:2]


def test_cohere_clients_v1_and_v2(api_url, http, rerankers):
    """Cohere's own SDK, pointed at us: v1 (/v1/rerank) and v2 (/v2/rerank) parse our responses."""
    import cohere
    import httpx

    plain = scores_by_index(rerank(http, model=QWEN_RERANKER, query=QUERY, documents=DOCS))
    best = list(np.argsort(-plain, kind="stable"))
    with httpx.Client(timeout=60) as transport:  # ours, so its sockets are closed when the test ends
        v1 = cohere.Client(api_key=API_KEY, base_url=api_url, httpx_client=transport, max_retries=0)
        reply = v1.rerank(model=QWEN_RERANKER, query=QUERY, documents=DOCS, top_n=3, return_documents=True)
        assert [r.index for r in reply.results] == best[:3]
        assert [r.document.text for r in reply.results] == [DOCS[i] for i in best[:3]]
        np.testing.assert_allclose([r.relevance_score for r in reply.results], plain[best[:3]], atol=1e-6)
        v2 = cohere.ClientV2(api_key=API_KEY, base_url=api_url, httpx_client=transport, max_retries=0)
        reply = v2.rerank(model=QWEN_RERANKER, query=QUERY, documents=DOCS, top_n=2, max_tokens_per_doc=4096)
        assert [r.index for r in reply.results] == best[:2]
        with pytest.raises(cohere.core.ApiError) as info:
            v2.rerank(model=MINILM, query=QUERY, documents=DOCS)
        assert info.value.status_code == 400


def test_models_list_rerankers_with_their_kind(http, rerankers):
    models = {m["id"]: m for m in http.get(http.base + "/v1/models", timeout=10).json()["data"]}
    assert models[QWEN_RERANKER]["kind"] == "rerank" and models[CROSS_ENCODER]["kind"] == "rerank"
    assert QWEN_RERANKER_ALIAS in models[QWEN_RERANKER]["aliases"]
    assert models[QWEN_RERANKER]["max_input_tokens"] == 512 and "dimensions" not in models[QWEN_RERANKER]
    assert models[MINILM]["kind"] == "embedding"


OK = {"model": CROSS_ENCODER, "query": QUERY, "documents": DOCS}
# (case id, path, body, status, error code or None, param or None)
BAD_INPUTS = [
    ("empty-documents", "/v1/rerank", {**OK, "documents": []}, 400, None, "documents"),
    ("documents-missing", "/v1/rerank", {"model": CROSS_ENCODER, "query": QUERY}, 400, None, "documents"),
    ("documents-string", "/v1/rerank", {**OK, "documents": "one doc"}, 400, None, "documents"),
    ("document-number", "/v1/rerank", {**OK, "documents": ["ok", 5]}, 400, None, "documents"),
    ("document-object-without-text", "/v1/rerank", {**OK, "documents": [{"title": "x"}]}, 400, None, "documents"),
    ("too-many-documents", "/v1/rerank", {**OK, "documents": ["d"] * 1001}, 400, "too_many_documents", "documents"),
    ("empty-query", "/v1/rerank", {**OK, "query": ""}, 400, None, "query"),
    ("blank-query", "/v1/rerank", {**OK, "query": "   "}, 400, None, "query"),
    ("query-missing", "/v1/rerank", {"model": CROSS_ENCODER, "documents": DOCS}, 400, None, "query"),
    ("query-list", "/v1/rerank", {**OK, "query": ["q"]}, 400, None, "query"),
    ("top-n-zero", "/v1/rerank", {**OK, "top_n": 0}, 400, None, "top_n"),
    ("top-n-string", "/v1/rerank", {**OK, "top_n": "3"}, 400, None, "top_n"),
    ("return-documents-string", "/v1/rerank", {**OK, "return_documents": "yes"}, 400, None, "return_documents"),
    ("truncate-string", "/v1/rerank", {**OK, "truncate": "yes"}, 400, None, "truncate"),
    ("instruction-number", "/v1/rerank", {**OK, "instruction": 3}, 400, None, "instruction"),
    ("too-long-qwen3", "/v1/rerank", {**OK, "model": QWEN_RERANKER, "documents": ["ok", LONG_DOC]}, 400,
     "context_length_exceeded", "documents"),
    ("too-long-cross-encoder", "/v1/rerank", {**OK, "documents": [LONG_DOC]}, 400, "context_length_exceeded",
     "documents"),
    ("model-missing-two-rerankers", "/v1/rerank", {"query": QUERY, "documents": DOCS}, 400, None, "model"),
    ("model-empty", "/v1/rerank", {**OK, "model": ""}, 400, None, "model"),
    ("unknown-model", "/v1/rerank", {**OK, "model": "rerank-v3.5"}, 404, "model_not_found", "model"),
    ("embedding-model-on-rerank", "/v1/rerank", {**OK, "model": MINILM}, 400, "wrong_model_kind", "model"),
    ("reranker-on-embeddings", "/v1/embeddings", {"model": CROSS_ENCODER, "input": "hi"}, 400, "wrong_model_kind",
     "model"),
    ("body-is-array", "/v1/rerank", [QUERY], 400, None, None),
]


@pytest.mark.parametrize("path,body,status,code,param", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_table(http, rerankers, path, body, status, code, param):
    assert_openai_error(http.post(http.base + path, json=body, timeout=60), status, code, param)


@pytest.mark.parametrize("headers,code", [
    ({}, "missing_api_key"),
    ({"Authorization": "Bearer not-a-real-key-123"}, "invalid_api_key"),
    ({"Authorization": "Bearer "}, "invalid_api_key"),
], ids=["no-key", "unknown-key", "empty-bearer"])
def test_bad_auth(api_url, rerankers, headers, code):
    response = requests.post(api_url + "/v1/rerank", json=OK, headers=headers, timeout=30)
    assert_openai_error(response, 401, code)


def test_good_key_is_accepted_as_bare_header(api_url, rerankers):
    response = requests.post(api_url + "/v1/rerank", json=OK, headers={"Authorization": API_KEY}, timeout=60)
    assert response.status_code == 200, response.text[:500]


def test_readme_retrieve_then_rerank_example(api_url, rerankers, tmp_path):
    """The API reference's Python example (docs/api.md) runs as written against the stack (URL and key filled in)."""
    page = (ROOT / "docs" / "api.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "/v1/rerank" in b]
    assert len(blocks) == 1, "expected one retrieve-then-rerank example in docs/api.md"
    # The example's reranker name is the test reranker's alias, so only the address and key change.
    assert f'"model": "{QWEN_RERANKER_ALIAS}"' in blocks[0]
    script = blocks[0].replace('"http://127.0.0.1:8000"', repr(api_url)).replace('"sk-..."', repr(API_KEY))
    path = tmp_path / "retrieve_then_rerank.py"
    path.write_text(script)
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        score, text = line.split(" ", 1)
        assert 0.0 <= float(score) <= 1.0 and text.endswith(".")


def test_a_batch_line_naming_a_reranker_fails_alone(http, rerankers):
    """No bulk slot serves a reranker: such a line must fail in the error file, not sit queued."""
    lines = [{"custom_id": "rr", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": CROSS_ENCODER, "input": "hi"}},
             {"custom_id": "ok", "method": "POST", "url": "/v1/embeddings", "body": {"model": MINILM, "input": "hi"}}]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = http.post(http.base + "/v1/files", files={"file": ("b.jsonl", content)}, data={"purpose": "batch"},
                         timeout=60).json()
    batch = http.post(http.base + "/v1/batches", json={"input_file_id": uploaded["id"], "endpoint": "/v1/embeddings",
                                                       "completion_window": "24h"}, timeout=60).json()

    def done():
        body = http.get(f"{http.base}/v1/batches/{batch['id']}", timeout=30).json()
        return body if body["status"] in ("completed", "failed", "expired", "cancelled") else None

    body = wait_until(done, 60, "the batch to finish", interval=0.3)
    assert body["status"] == "completed" and body["request_counts"]["failed"] == 1, body
    errors = http.get(f"{http.base}/v1/files/{body['error_file_id']}/content", timeout=30).text.splitlines()
    assert json.loads(errors[0])["response"]["body"]["error"]["code"] == "wrong_model_kind"
