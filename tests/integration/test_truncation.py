"""`truncation_direction` through the real stack: "left" keeps a long text's end, "right" (the default) its start.

A long text is built from two halves of different words, each word one token, so which half a
truncated input kept is plain: a text cut from the left embeds (or scores) exactly like its tail
alone, cut from the right like its head. How long that tail or head may be is asked of the service
itself: the longest that it takes without `truncate`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from tests.fixtures.tiny_models import _corpus
from tests.integration.helpers import (
    CROSS_ENCODER,
    MINILM,
    QUERY,
    QWEN_RERANKER,
    assert_openai_error,
    embed,
    jsonl,
    request_line,
    rerank,
    session_for,
    upload,
    wait_batch,
)
from tests.integration.jobs_helpers import matrix, result_msgpack, submit, wait_finished

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

HEAD_WORDS = ["river", "bridge", "water", "boat", "stone"]  # one WordPiece token each in MiniLM's vocabulary
TAIL_WORDS = ["music", "piano", "song", "concert", "guitar"]


def halves(head_words: list[str], tail_words: list[str], each: int = 700) -> tuple[list[str], list[str]]:
    return [head_words[i % len(head_words)] for i in range(each)], [tail_words[i % len(tail_words)] for i in range(each)]


def longest_fitting(fits, words: list[str], from_end: bool) -> str:
    """The longest run of `words` (their end, or their start) that the service takes whole; binary search."""
    def text(k: int) -> str:
        return " ".join(words[-k:] if from_end else words[:k])

    low, high = 1, len(words)  # text(low) fits, text(high) does not
    assert fits(text(low)) and not fits(text(high))
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(text(mid)) else (low, mid)
    return text(low)


def one_vector(response) -> np.ndarray:
    assert response.status_code == 200, response.text[:500]
    return np.asarray(response.json()["data"][0]["embedding"], dtype=np.float32)


def embeds_whole(http, text: str) -> bool:
    response = embed(http, model=MINILM, input=text)
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "context_length_exceeded"
        return False
    assert response.status_code == 200, response.text[:500]
    return True


@pytest.fixture(scope="module")
def long_text(api_url):
    head, tail = halves(HEAD_WORDS, TAIL_WORDS)
    return head, tail, " ".join(head + tail)


@pytest.fixture(scope="module")
def expected(api_url, long_text):
    """MiniLM's vectors of the long text's longest whole tail and head (what left and right must equal)."""
    head, tail, _ = long_text
    with session_for(api_url) as http:
        tail_text = longest_fitting(lambda t: embeds_whole(http, t), tail, from_end=True)
        head_text = longest_fitting(lambda t: embeds_whole(http, t), head, from_end=False)
        assert len(tail_text.split()) == len(head_text.split()) == 254  # 256 less [CLS] and [SEP]
        return {"left": one_vector(embed(http, model=MINILM, input=tail_text)),
                "right": one_vector(embed(http, model=MINILM, input=head_text))}


def test_sync_left_keeps_the_tail_and_right_the_head(http, long_text, expected):
    text = long_text[2]
    left = one_vector(embed(http, model=MINILM, input=text, truncate=True, truncation_direction="left"))
    right = one_vector(embed(http, model=MINILM, input=text, truncate=True, truncation_direction="right"))
    default = one_vector(embed(http, model=MINILM, input=text, truncate=True))
    assert float(left @ expected["left"]) > 0.9999
    assert float(right @ expected["right"]) > 0.9999 and float(default @ expected["right"]) > 0.9999
    assert float(left @ right) < 0.9  # the two halves really differ
    usage = embed(http, model=MINILM, input=text, truncate=True, truncation_direction="left").json()["usage"]
    assert usage["prompt_tokens"] == 256


def test_tei_spelling_is_taken(http, long_text, expected):
    left = one_vector(embed(http, model=MINILM, input=long_text[2], truncate=True, truncation_direction="Left"))
    assert float(left @ expected["left"]) > 0.9999


def test_direction_without_truncate_has_no_effect(http, long_text):
    response = embed(http, model=MINILM, input=long_text[2], truncation_direction="left")
    assert_openai_error(response, 400, "context_length_exceeded", "input")
    short = embed(http, model=MINILM, input="a short text", truncation_direction="left")
    assert np.allclose(one_vector(short), one_vector(embed(http, model=MINILM, input="a short text")), atol=1e-6)


@pytest.mark.parametrize("direction", ["left", "right"])
def test_a_job_truncates_as_sync_does(http, long_text, expected, direction):
    job = submit(http, model=MINILM, input=[long_text[2], "short"], truncate=True, truncation_direction=direction)
    assert wait_finished(http, job["id"])["status"] == "completed"
    vectors = matrix(result_msgpack(http, job["id"]))
    assert float(vectors[0] @ expected[direction]) > 0.9999


def test_a_batch_line_truncates_as_sync_does(client, long_text, expected):
    lines = [request_line(direction, {"model": MINILM, "input": long_text[2], "truncate": True,
                                      "truncation_direction": direction}) for direction in ("left", "right")]
    done = wait_batch(client, client.batches.create(input_file_id=upload(client, jsonl(lines)).id,
                                                    endpoint="/v1/embeddings", completion_window="24h").id)
    assert done.status == "completed" and done.request_counts.completed == 2, done
    for line in client.files.content(done.output_file_id).text.splitlines():
        out = json.loads(line)
        vector = np.asarray(out["response"]["body"]["data"][0]["embedding"], dtype=np.float32)
        assert float(vector @ expected[out["custom_id"]]) > 0.9999


@pytest.fixture(scope="module")
def rerank_words(rerankers):
    """Corpus words that are one token, after a space, for both tiny rerankers: (head words, tail words)."""
    tokenizers = [AutoTokenizer.from_pretrained(path) for path in rerankers.values()]
    words = sorted({w.strip(".").lower() for s in _corpus() for w in s.split()})
    single = [w for w in words if w.isalpha() and
              all(len(t.encode(" " + w, add_special_tokens=False)) == 1 for t in tokenizers)]
    assert len(single) >= 8, single
    return single[:4], single[4:8]


@pytest.mark.parametrize("model", [QWEN_RERANKER, CROSS_ENCODER])
def test_rerank_left_scores_the_documents_end_and_right_its_start(http, rerankers, rerank_words, model):
    head, tail = halves(*rerank_words)
    document = " ".join(head + tail)

    def score(doc: str, **options) -> float | None:
        response = rerank(http, model=model, query=QUERY, documents=[doc], **options)
        if response.status_code == 400:
            assert response.json()["error"]["code"] == "context_length_exceeded"
            return None
        assert response.status_code == 200, response.text[:500]
        return response.json()["results"][0]["relevance_score"]

    tail_text = longest_fitting(lambda d: score(d) is not None, tail, from_end=True)
    head_text = longest_fitting(lambda d: score(d) is not None, head, from_end=False)
    left = score(document, truncate=True, truncation_direction="left")
    right = score(document, truncate=True, truncation_direction="right")
    assert left == pytest.approx(score(tail_text), abs=1e-5)
    assert right == pytest.approx(score(head_text), abs=1e-5)
    assert right == pytest.approx(score(document, truncate=True), abs=1e-5)  # "right" is the default
    assert abs(left - right) > 1e-4  # the two halves really score differently


@pytest.mark.parametrize("path,body", [
    ("/v1/embeddings", {"model": MINILM, "input": "hi", "truncate": True, "truncation_direction": "start"}),
    ("/v1/embeddings", {"model": MINILM, "input": "hi", "truncation_direction": None}),
    ("/v1/embeddings", {"model": MINILM, "input": "hi", "truncation_direction": 1}),
    ("/v1/jobs", {"model": MINILM, "input": ["hi"], "truncate": True, "truncation_direction": "both"}),
    ("/v1/rerank", {"query": "q", "documents": ["d"], "truncate": True, "truncation_direction": "middle"}),
])
def test_bad_directions_are_400_naming_the_field(http, path, body):
    assert_openai_error(http.post(http.base + path, json=body, timeout=60), 400, None, "truncation_direction")
