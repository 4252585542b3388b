"""Token-id input and LangChain's default: refusals that name `check_embedding_ctx_length=False`, and an API
started with EMBED_ACCEPT_TOKEN_IDS=false that takes no token ids at all."""

from __future__ import annotations

import json

import openai
import pytest

from embedserve import redis_keys
from tests.integration.helpers import (
    MINILM,
    assert_openai_error,
    embed,
    jsonl,
    request_line,
    session_for,
    upload,
    wait_batch,
)
from tests.integration.jobs_helpers import submit, wait_finished

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

FIX = "check_embedding_ctx_length=False"
IDS = [101, 7592, 2088, 102]  # "[CLS] hello world [SEP]" in MiniLM's vocabulary
TIKTOKEN_IDS = [15339, 1917, 100255]  # cl100k ids, as LangChain sends them: the last is past MiniLM's 30522


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/jobs"])
def test_out_of_vocabulary_ids_name_langchains_switch(http, path):
    response = http.post(http.base + path, json={"model": MINILM, "input": [TIKTOKEN_IDS]}, timeout=60)
    error = assert_openai_error(response, 400, "invalid_token_id", "input")
    assert FIX in error["message"] and "100255" in error["message"]


LATE = "late-minilm"  # declared to an API before any worker serves it: the API has no card to check ids against


def test_the_workers_refusal_names_it_too(stack, workers):
    _, url = stack.start_api(EMBED_API_KEYS="test-key-declared-0005", EMBED_MODELS=LATE)
    with session_for(url, "test-key-declared-0005") as http:
        job = submit(http, model=LATE, input=[TIKTOKEN_IDS, IDS])  # accepted: no card says what is out of range
        worker = stack.start_worker(LATE, EMBED_MODEL_NAME=LATE)
        try:
            done = wait_finished(http, job["id"])
        finally:
            worker.stop()
            client = stack.redis.client()  # forget it, or /ready would report it down for the rest of the session
            client.hdel(redis_keys.known_models(), LATE)
            client.delete(redis_keys.worker_heartbeats(LATE))
    assert done["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    error = done["errors"]["data"][0]
    assert (error["index"], error["code"], error["param"]) == (0, "invalid_token_id", "input")
    assert FIX in error["message"]


REFUSING_KEY = "test-key-no-token-ids-0004"


@pytest.fixture(scope="module")
def refusing(stack, workers):
    """An API started with EMBED_ACCEPT_TOKEN_IDS=false, on the shared stack."""
    _, url = stack.start_api(EMBED_API_KEYS=REFUSING_KEY, EMBED_ACCEPT_TOKEN_IDS="false")
    with session_for(url, REFUSING_KEY) as session:
        yield session


def assert_not_accepted(response) -> None:
    error = assert_openai_error(response, 400, "token_ids_not_accepted", "input")
    assert FIX in error["message"] and "EMBED_ACCEPT_TOKEN_IDS" in error["message"]


@pytest.mark.parametrize("value", [IDS, [IDS, IDS[:2]]], ids=["one-input", "inputs"])
def test_token_ids_are_refused_on_every_path(refusing, value):
    assert_not_accepted(embed(refusing, model=MINILM, input=value))
    assert_not_accepted(refusing.post(refusing.base + "/v1/jobs", json={"model": MINILM, "input": value},
                                      timeout=60))
    assert_not_accepted(refusing.post(refusing.base + "/v1/embeddings", json={"model": MINILM, "input": value},
                                      headers={"Prefer": "respond-async"}, timeout=60))


def test_text_still_embeds_and_ids_work_where_accepted(refusing, http):
    assert embed(refusing, model=MINILM, input=["hello world"]).status_code == 200
    assert embed(http, model=MINILM, input=IDS).status_code == 200  # the default API: EMBED_ACCEPT_TOKEN_IDS=true


def test_a_batch_line_of_token_ids_fails_alone(refusing):
    with openai.OpenAI(base_url=refusing.base + "/v1", api_key=REFUSING_KEY, max_retries=0) as client:
        lines = [request_line("ids", {"model": MINILM, "input": IDS}),
                 request_line("text", {"model": MINILM, "input": "hello world"})]
        done = wait_batch(client, client.batches.create(input_file_id=upload(client, jsonl(lines)).id,
                                                        endpoint="/v1/embeddings", completion_window="24h").id)
        assert done.status == "completed", done
        assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
        errors = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
    assert [e["custom_id"] for e in errors] == ["ids"]
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["code"] == "token_ids_not_accepted"
    assert FIX in errors[0]["response"]["body"]["error"]["message"]
