"""Scale from zero, seen from the API and the CLI: declared and catalogued models, lookups that re-read, card conflicts.

Each test runs on a private Redis (none of the session's models there), with real API processes,
the real `embedserve models` CLI and, for the card conflict, a real worker.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from embedserve.fleet.catalogue import Catalogue, ModelCard
from embedserve.fleet.liveness import Liveness
from embedserve.fleet.registry import Heartbeat
from tests.integration.helpers import API_KEY, MINILM
from tests.stack import ROOT, RedisServer, Stack

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def private(tmp_path):
    """A Stack on a fresh private Redis, with its own job store."""
    server = RedisServer.start("--save", "")
    stack = Stack(redis=server, log_dir=tmp_path,
                  base_env={"EMBED_API_KEYS": API_KEY, "EMBED_JOB_STORE": f"file://{tmp_path / 'jobs'}"})
    yield stack
    stack.close()
    server.stop()


def serve(client, card: ModelCard, worker_id: str = "fake-worker") -> None:
    """What a worker's heartbeat writes (Liveness.beat, then Catalogue.announce), without the worker."""
    Catalogue(client).announce(card, Liveness(client).beat(worker_id, card.name))


def models_cli(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embedserve.cli", "models", *args], cwd=ROOT, env=stack.env(**env),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_declared_models_are_known_with_no_worker_and_take_jobs(private):
    _, url = private.start_api(EMBED_MODELS="future-model", EMBED_RERANK_MODELS="future-reranker")
    listed = {m["id"]: m for m in requests.get(url + "/v1/models", headers=AUTH, timeout=30).json()["data"]}
    assert listed["future-model"]["workers"] == 0 and listed["future-model"]["kind"] == "embedding"
    assert listed["future-model"]["dimensions"] == 0  # unknown until a worker announces its card
    assert listed["future-reranker"]["kind"] == "rerank" and listed["future-reranker"]["workers"] == 0
    assert requests.get(url + "/v1/models/future-model", headers=AUTH, timeout=30).status_code == 200
    # The CLI, run with the API's settings, lists what GET /v1/models lists.
    declared = {"EMBED_MODELS": "future-model", "EMBED_RERANK_MODELS": "future-reranker"}
    cli = [json.loads(line) for line in models_cli(private, "list", "--json", **declared).stdout.splitlines()]
    assert {m["name"]: (m["kind"], m["workers"], m["declared"]) for m in cli} == {
        "future-model": ("embedding", 0, True), "future-reranker": ("rerank", 0, True)}
    table = models_cli(private, "list", **declared).stdout
    assert "future-model" in table and "never (declared" in table
    refused = models_cli(private, "remove", "future-model", **declared)
    assert refused.returncode == 1 and "EMBED_MODELS" in refused.stderr
    ready = requests.get(url + "/ready", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "redis": "ok", "models": {"future-model": 0, "future-reranker": 0}}

    job = requests.post(url + "/v1/jobs", headers=AUTH, timeout=30,
                        json={"model": "future-model", "input": ["queued until a worker starts"], "dimensions": 4096})
    assert job.status_code == 202, job.text  # `dimensions` is for the worker to check: no card yet
    assert job.json()["model"] == "future-model" and job.json()["status"] in ("queued", "validating", "in_progress")
    # `model` may be left out: no embedding model is live, and exactly one is known.
    bare = requests.post(url + "/v1/jobs", headers=AUTH, timeout=30, json={"input": ["which model?"]})
    assert bare.status_code == 202, bare.text
    assert bare.json()["model"] == "future-model"


@pytest.mark.slow
def test_a_model_announced_after_the_api_cached_its_view_is_found_at_once(private):
    """No API process answers 404 or "missing model" for a model a worker has announced (issue 11)."""
    _, url = private.start_api()
    # Warm the API's one-second registry cache with a view that has no model at all.
    assert requests.post(url + "/v1/jobs", headers=AUTH, timeout=30, json={"input": ["x"]}).status_code == 400
    assert requests.get(url + "/v1/models/fresh-model", headers=AUTH, timeout=30).status_code == 404
    serve(private.redis.client(), ModelCard(name="fresh-model", aliases=("org/fresh-model",), dim=8, max_length=16,
                                            vocab_size=100))
    # At once, within the cache's second: a miss re-reads Redis before answering.
    one = requests.get(url + "/v1/models/org/fresh-model", headers=AUTH, timeout=30)
    assert one.status_code == 200 and one.json()["workers"] == 1
    bare = requests.post(url + "/v1/jobs", headers=AUTH, timeout=30, json={"input": ["the only model"]})
    assert bare.status_code == 202, bare.text
    assert bare.json()["model"] == "fresh-model"


def test_models_cli_lists_and_removes(private):
    client = private.redis.client()
    serve(client, ModelCard(name="live-model", dim=384, max_length=256))
    seconds, _ = client.time()
    Catalogue(client).announce(ModelCard(name="old-model", dim=1024, max_length=8192), seconds - 3 * 3600)
    Catalogue(client).announce(ModelCard(name="old-ranker", kind="rerank", max_length=8192), seconds - 60)

    listed = models_cli(private, "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "KIND", "DIMS", "MAX", "TOKENS"]
    by_name = {row.split()[0]: row.split() for row in rows}
    assert by_name["live-model"][1:5] == ["embedding", "384", "256", "1"]
    assert by_name["old-model"][1:5] == ["embedding", "1024", "8192", "0"] and "(3h ago)" in listed.stdout
    assert by_name["old-ranker"][1:5] == ["rerank", "-", "8192", "0"]
    as_json = [json.loads(line) for line in models_cli(private, "list", "--json").stdout.splitlines()]
    assert {m["name"]: m["workers"] for m in as_json} == {"live-model": 1, "old-model": 0, "old-ranker": 0}

    removed = models_cli(private, "remove", "old-model")
    assert removed.returncode == 0 and "removed model 'old-model'" in removed.stderr
    assert "old-model" not in models_cli(private, "list").stdout
    again = models_cli(private, "remove", "old-model")
    assert again.returncode == 1 and "no model named 'old-model'" in again.stderr
    live = models_cli(private, "remove", "live-model")
    assert live.returncode == 0 and "1 live worker(s) still serve it" in live.stderr


@pytest.mark.slow
def test_a_worker_whose_card_disagrees_with_live_workers_is_refused_at_start(private):
    """Two workers of one name that disagree on dimensions would overwrite each other's card in turn."""
    odd = ModelCard(name=MINILM, aliases=("sentence-transformers/all-MiniLM-L6-v2",), dim=1024, max_length=256,
                    vocab_size=30522)
    peer = Heartbeat(private.redis.client(), "peer-worker", odd, interval=1.0)
    peer.start()  # a live peer for as long as the real worker takes to load
    try:
        worker = private.spawn("worker-conflict", "worker")
        worker.popen.wait(300)
        log = worker.log()
        assert worker.popen.returncode == 2, log[-3000:]
        assert f"another worker serves '{MINILM}' with dimensions 1024" in log, log[-3000:]
        assert "give it another EMBED_MODEL_NAME" in log
        assert Catalogue(private.redis.client()).get(MINILM).dim == 1024  # the live peer's card stands
    finally:
        peer.stop()
