"""Same text, same bits (EMBED_DETERMINISTIC, on by default on the CPU), on the real stack.

300 texts of mixed lengths are embedded alone, one request each; then inside 20 random mixes with
other texts of other lengths, sent as sync requests of 1-256 inputs from several threads at once
(so the worker's batcher packs rows of different requests into one pass), and as one job; two
workers serve each model, one of them started with EMBED_PACKED=off. Every float32 byte must equal
the text's alone. The same for both rerankers' scores. Unit-level version: tests/unit/test_batch_invariance.py.
"""

from __future__ import annotations

import base64
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.integration.helpers import CROSS_ENCODER, MINILM, QWEN, QWEN_ALIAS, QWEN_RERANKER, embed, rerank, session_for
from tests.integration.jobs_helpers import matrix, result_msgpack, submit, wait_finished

pytestmark = pytest.mark.slow  # a second worker per model, and ~2,000 requests

WORDS = ("the quick brown fox jumps over a lazy dog while seven small birds sing in tall green trees near "
         "the river and somebody reads a long document about search engines on a rainy afternoon").split()


def texts(n: int, seed: int, longest: int = 90) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, longest))) + f" #{seed}.{i}" for i in range(n)]


def vectors(http, model: str, inputs: list[str]) -> list[bytes]:
    """Each input's float32 bytes, from one sync request (base64: the bytes the worker made)."""
    response = embed(http, model=model, input=inputs, encoding_format="base64")
    assert response.status_code == 200, response.text[:300]
    return [base64.b64decode(item["embedding"]) for item in response.json()["data"]]


@pytest.fixture(scope="module")
def second_workers(stack, workers, qwen_dir):
    """A second worker per model, with the padded setting: rows now land on either."""
    extra = [stack.start_worker(MINILM, EMBED_PACKED="off"),
             stack.start_worker(QWEN, EMBED_MODEL=str(qwen_dir), EMBED_MODEL_NAME=QWEN,
                                EMBED_MODEL_ALIASES=QWEN_ALIAS, EMBED_PACKED="off")]
    yield
    for process in extra:
        process.stop()


@pytest.mark.parametrize("model", [MINILM, QWEN])
def test_a_texts_vector_is_the_same_bytes_alone_and_in_any_mix(model, api_url, second_workers):
    http = session_for(api_url)
    subjects = texts(300, seed=1)
    alone = {text: vectors(http, model, [text])[0] for text in subjects}
    rng = random.Random(7)
    mixes = []
    for m in range(20):
        mix = rng.sample(subjects, rng.randint(10, 100)) + texts(rng.randint(0, 60), seed=100 + m, longest=150)
        rng.shuffle(mix)
        mixes.append(mix)

    def send(mix: list[str]) -> list[tuple[str, bytes]]:
        out, start = [], 0
        while start < len(mix):
            size = random.Random(len(mix) + start).randint(1, 256)
            part = mix[start:start + size]
            out += zip(part, vectors(session_for(api_url), model, part))
            start += size
        return out

    with ThreadPoolExecutor(4) as pool:  # several requests in flight: their rows share passes
        results = [pair for pairs in pool.map(send, mixes) for pair in pairs]
    job_inputs = subjects + texts(100, seed=999, longest=150)
    random.Random(3).shuffle(job_inputs)
    job = wait_finished(http, submit(http, model=model, input=job_inputs)["id"])
    assert job["status"] == "completed", job
    job_rows = matrix(result_msgpack(http, job["id"]))
    results += [(text, job_rows[i].tobytes()) for i, text in enumerate(job_inputs)]

    compared = [(text, got) for text, got in results if text in alone]
    assert len(compared) > 1.5 * len(subjects)
    moved = [text for text, got in compared if got != alone[text]]
    assert not moved, f"{len(moved)} of {len(compared)} vectors differ from the text's alone, e.g. {moved[0]!r}"


@pytest.mark.parametrize("model", [QWEN_RERANKER, CROSS_ENCODER])
def test_a_documents_score_is_the_same_alone_and_in_any_mix(model, api_url, rerankers):
    http = session_for(api_url)
    query = "what does the fox read?"
    documents = texts(60, seed=5)

    def scores(docs: list[str]) -> list[float]:
        response = rerank(http, model=model, query=query, documents=docs)
        assert response.status_code == 200, response.text[:300]
        by_index = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
        return [by_index[i] for i in range(len(docs))]

    alone = {doc: scores([doc])[0] for doc in documents}
    rng = random.Random(11)
    mixes = [rng.sample(documents, rng.randint(2, 60)) + texts(rng.randint(0, 30), seed=50 + m, longest=60)
             for m in range(20)]
    with ThreadPoolExecutor(4) as pool:
        scored = list(pool.map(scores, mixes))
    moved = [doc for mix, got in zip(mixes, scored) for doc, score in zip(mix, got)
             if doc in alone and np.float32(score).tobytes() != np.float32(alone[doc]).tobytes()]
    assert not moved, f"{len(moved)} scores differ from the document's alone"
