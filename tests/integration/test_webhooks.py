"""Webhooks on a real stack: a receiver process on loopback verifies every delivery with the official
`openai` client and the `standardwebhooks` package; events are retried, accepted once, survive the
death of the processes that ran the job and held the delivery, and never go to a private address
unless allowed."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests

from embedserve import redis_keys
from embedserve.events import event, signing
from tests.integration.helpers import MINILM, jsonl, keys_cli, request_line, session_for
from tests.integration.jobs_helpers import get_job, submit, wait_finished
from tests.stack import ROOT, Process, free_port, private_stack, wait_until

pytestmark = pytest.mark.slow  # starts a stack of its own, and a receiver process

STATIC_KEY = "test-webhook-static-key-0001"
STATIC_SECRET = signing.new_secret()
RETRY_DELAY_S = 0.3
TIMEOUT_S = 4  # the sender's connect and read timeouts; its lease is 2 x this + 5 s
LEASE_S = 2 * TIMEOUT_S + 5


class Receiver:
    """The receiver process (tests/fixtures/webhook_receiver.py) and its files."""

    def __init__(self, directory):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.secrets, self.control, self.log_path = (directory / n for n in ("secrets", "control.json", "log.jsonl"))
        self.secrets.write_text(STATIC_SECRET + "\n")
        self.answer()
        self.log_path.write_text("")
        log = directory / "receiver.out"
        with log.open("w") as out:
            popen = subprocess.Popen([sys.executable, "-m", "tests.fixtures.webhook_receiver", "--port", str(self.port),
                                      "--secrets", str(self.secrets), "--control", str(self.control),
                                      "--log", str(self.log_path)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.process = Process("receiver", popen, log)
        wait_until(self._listening, 30, "the webhook receiver to listen")

    def _listening(self) -> bool:
        try:
            return requests.get(self.url, timeout=1).status_code > 0
        except requests.RequestException:
            return False

    def answer(self, **control) -> None:
        self.control.write_text(json.dumps(control))

    def trust(self, secret: str) -> None:
        with self.secrets.open("a") as out:
            out.write(secret + "\n")

    def lines(self, data_id: str | None = None) -> list[dict]:
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines() if line]
        return [line for line in lines if data_id is None or line["data_id"] == data_id]

    def accepted(self, data_id: str) -> list[dict]:
        return [line for line in self.lines(data_id) if line["status"] == 200]


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    receiver = Receiver(tmp_path_factory.mktemp("receiver"))
    yield receiver
    receiver.process.stop()


@pytest.fixture(scope="module")
def hooked(tmp_path_factory, receiver):
    """A stack whose static key's events go to the receiver: one worker, one API; yields (stack, api url)."""
    env = {"EMBED_API_KEYS": STATIC_KEY, "EMBED_WEBHOOK_URL": receiver.url, "EMBED_WEBHOOK_SECRET": STATIC_SECRET,
           "EMBED_WEBHOOK_ALLOW_PRIVATE": "true", "EMBED_WEBHOOK_RETRY_DELAY": str(RETRY_DELAY_S),
           "EMBED_WEBHOOK_TIMEOUT": str(TIMEOUT_S)}
    with private_stack(tmp_path_factory.mktemp("webhook-stack"), **env) as stack:
        stack.start_worker(MINILM)
        _, url = stack.start_api()
        yield stack, url


def test_private_url_is_refused_without_the_setting(hooked, receiver):
    stack, _ = hooked
    refuse = stack.env(EMBED_WEBHOOK_ALLOW_PRIVATE="false")
    for args in (["create", "--name", "private-hook", "--webhook-url", receiver.url],
                 ["create", "--name", "metadata-hook", "--webhook-url", "http://169.254.169.254/latest/meta-data/"]):
        done = subprocess.run([sys.executable, "-m", "embedserve.cli", "keys", *args], cwd=ROOT, env=refuse,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "EMBED_WEBHOOK_ALLOW_PRIVATE" in done.stderr and "Traceback" not in done.stderr
    assert "private-hook" not in keys_cli(stack, "list").stdout  # nothing was created
    # Set later: refused alike; allowed with the setting, with a new secret on stdout; then removed.
    assert keys_cli(stack, "create", "--name", "later").returncode == 0
    done = subprocess.run([sys.executable, "-m", "embedserve.cli", "keys", "webhook", "later", "--url", receiver.url],
                          cwd=ROOT, env=refuse, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "loopback" in done.stderr, done.stderr
    done = keys_cli(stack, "webhook", "later", "--url", receiver.url)
    assert done.returncode == 0 and signing.secret_bytes(done.stdout.strip())
    assert json.loads(keys_cli(stack, "list", "--json").stdout.splitlines()[0])["webhook_url"] == receiver.url
    assert keys_cli(stack, "webhook", "later", "--remove").returncode == 0
    assert json.loads(keys_cli(stack, "list", "--json").stdout.splitlines()[0])["webhook_url"] is None
    # A static key's endpoint: the API refuses to start with it.
    api = stack.spawn("api-refused", "api", EMBED_PORT=str(free_port()), EMBED_WEBHOOK_ALLOW_PRIVATE="false")
    assert api.popen.wait(60) == 2
    assert "EMBED_WEBHOOK_URL refused" in api.log() and "loopback" in api.log()


def test_events_are_signed_retried_and_accepted_once(hooked, receiver):
    stack, url = hooked
    receiver.answer(fail_first=2)
    done = keys_cli(stack, "create", "--name", "hooked", "--webhook-url", receiver.url)
    assert done.returncode == 0, done.stderr
    key, secret = done.stdout.strip(), done.stderr.rsplit("once): ", 1)[1].split()[0]
    receiver.trust(secret)
    plain = keys_cli(stack, "create", "--name", "unhooked").stdout.strip()
    with session_for(url, key) as http, session_for(url, plain) as other:
        job = submit(http, model=MINILM, input=["one", "two", "three"])
        quiet = submit(other, model=MINILM, input=["no webhook here"])
        batch_file = http.post(url + "/v1/files", files={"file": ("b.jsonl", jsonl(
            [request_line("a", {"model": MINILM, "input": "alpha"})]))}, data={"purpose": "batch"}, timeout=60).json()
        batch = http.post(url + "/v1/batches", json={"input_file_id": batch_file["id"], "endpoint": "/v1/embeddings",
                                                     "completion_window": "24h"}, timeout=60).json()
        bad_file = http.post(url + "/v1/files", files={"file": ("bad.jsonl", jsonl(  # a duplicate custom_id
            [request_line("same", {"model": MINILM, "input": "x"})] * 2))},
                             data={"purpose": "batch"}, timeout=60).json()
        refused = http.post(url + "/v1/batches", json={"input_file_id": bad_file["id"],
                                                       "endpoint": "/v1/embeddings", "completion_window": "24h"},
                            timeout=60).json()
        assert refused["status"] == "failed"
        assert wait_finished(http, job["id"])["status"] == "completed"
        wait_finished(other, quiet["id"])
        expected = {job["id"]: "embedding.job.completed", batch["id"]: "batch.completed",
                    refused["id"]: "batch.failed"}
        wait_until(lambda: all(receiver.accepted(i) for i in expected), 120, "every event to be accepted")
        time.sleep(2 * RETRY_DELAY_S + 2)  # nothing more comes once accepted
        for object_id, event_type in expected.items():
            lines = receiver.lines(object_id)
            assert len(receiver.accepted(object_id)) == 1, lines
            assert [line["status"] for line in lines] == [500, 500, 200]  # two failed attempts, retried
            assert {line["id"] for line in lines} == {event.event_id(object_id)}  # one stable webhook-id
            assert all(line["openai"] and line["standardwebhooks"] for line in lines)
            assert {line["type"] for line in lines} == {event_type}
            assert lines[0]["body_keys"] == ["created_at", "data", "id", "object", "type"]
        assert receiver.lines(quiet["id"]) == []  # a key with no endpoint sends nothing
        assert "webhook_delivered_at" not in get_job(other, quiet["id"])
        assert wait_until(lambda: get_job(http, job["id"])["webhook_delivered_at"], 30, "the job to say delivered")
        for batch_id in (batch["id"], refused["id"]):
            wait_until(lambda b=batch_id: http.get(f"{url}/v1/batches/{b}", timeout=30).json()["webhook_delivered_at"],
                       30, "the batch to say delivered")
    metrics = wait_until(lambda: _metrics(url) if _metrics(url).get("embedserve_webhook_deliveries_total", 0) >= 3
                         else None, 30, "/metrics to count the deliveries")
    assert metrics["embedserve_webhook_failed_attempts_total"] >= 6
    assert metrics["embedserve_webhook_given_up_total"] == 0


def test_delivery_survives_the_api_and_worker_dying_mid_attempt(hooked, receiver):
    stack, url = hooked
    receiver.answer(hang_first=60)  # the first attempt is held: its sender dies holding the lease
    with session_for(url, STATIC_KEY) as http:
        job = submit(http, model=MINILM, input=["a job whose sender dies"])
        assert wait_finished(http, job["id"])["status"] == "completed"
    held = wait_until(lambda: [ln for ln in receiver.lines(job["id"]) if ln["status"] == "hanging"], 60,
                      "the first attempt to arrive")[0]
    for process in stack.processes:
        if process.name in ("api", f"worker-{MINILM}"):
            process.kill_tree()
    client = stack.redis.client()
    assert client.hget(redis_keys.job(job["id"]), "status") == b"completed"
    assert client.zscore(redis_keys.webhooks_due(), event.event_id(job["id"])) is not None  # still owed
    _, url = stack.start_api()  # a fresh API, no worker: sending needs none
    wait_until(lambda: receiver.accepted(job["id"]), LEASE_S + 60, "the event to be delivered after the deaths")
    accepted = receiver.accepted(job["id"])
    assert len(accepted) == 1 and accepted[0]["openai"] and accepted[0]["standardwebhooks"]
    assert accepted[0]["arrived"] >= held["arrived"] + LEASE_S - 1  # taken again once the dead sender's lease ran out
    with session_for(url, STATIC_KEY) as http:
        assert wait_until(lambda: get_job(http, job["id"])["webhook_delivered_at"], 30, "the job to say delivered")


def _metrics(url: str) -> dict[str, float]:
    text = requests.get(url + "/metrics", timeout=30).text
    values = {}
    for line in text.splitlines():
        if line.startswith("embedserve_webhook_"):
            name, value = line.split()[:2]
            values[name] = float(value)
    return values
