"""A worker's Redis connections under a stalled or half-open Redis (embedserve/redis_client.py).

Each test owns its Redis, API and one worker (MiniLM under its own served name):
- `CLIENT PAUSE` for longer than the socket timeout and the dead-after time, mid-job: the worker's
  commands time out and are retried, it is reaped meanwhile and re-registers; the job still counts
  every index once, and sync requests work afterwards;
- a half-open connection: a proxy between the worker and Redis stops forwarding on every connection
  it has (no FIN, no RST: a failover, a NAT or a firewall dropping the flow) but takes new ones: every
  worker thread must give up its dead socket and carry on over a new one.
"""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest
import redis as redis_py
import requests

from embedserve.fleet.liveness import Liveness
from tests.integration.helpers import API_KEY, session_for
from tests.integration.jobs_helpers import get_job, result_ndjson, submit, wait_finished
from tests.stack import private_stack, wait_until

pytestmark = pytest.mark.slow  # starts stacks of its own: API and worker processes (tests/stack.py)

DEAD_AFTER_S = 4
PAUSE_MS = 8000


@pytest.fixture
def private(tmp_path):
    with private_stack(tmp_path, EMBED_WORKER_DEAD_AFTER=str(DEAD_AFTER_S)) as stack:
        yield stack


def long_texts(n: int, seed: str) -> list[str]:
    """Distinct texts of ~60 words: a job of a few hundred takes seconds on a CPU, long enough to pause."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    return [f"{seed} {i}: " + " ".join(words[(i * 7 + k) % 10] for k in range(60)) for i in range(n)]


def embed(http, model: str, text: str, timeout: float = 120) -> requests.Response:
    return http.post(http.base + "/v1/embeddings", json={"model": model, "input": text}, timeout=timeout)


def assert_every_index_once(http, job_id: str, n: int) -> None:
    lines = result_ndjson(http, job_id)
    assert [line["index"] for line in lines] == list(range(n))
    failed = [line for line in lines if "embedding" not in line]
    assert not failed, failed[:3]


def workers_of(http, model: str) -> int:
    response = http.get(http.base + "/v1/models", timeout=30)
    assert response.status_code == 200, response.text[:300]
    return next(m["workers"] for m in response.json()["data"] if m["id"] == model)


def heartbeat_age(client: redis_py.Redis, model: str) -> float | None:
    """Seconds since the model's freshest heartbeat, on Redis's clock (None: no worker routed)."""
    stamps = client.zrange(f"embed:workers:{model}", -1, -1, withscores=True)
    if not stamps:
        return None
    seconds, micros = client.time()
    return seconds + micros / 1e6 - stamps[0][1]


def test_a_client_pause_longer_than_the_timeouts_loses_nothing_and_counts_nothing_twice(private):
    model, n = "pause-minilm", 600
    _, url = private.start_api(EMBED_API_KEYS=API_KEY)
    worker = private.start_worker(model, EMBED_MODEL_NAME=model)
    http = session_for(url)
    client = private.redis.client()
    for i in range(3):
        assert embed(http, model, f"before {i}").status_code == 200

    job = submit(http, model=model, input=long_texts(n, "pause"))
    wait_until(lambda: get_job(http, job["id"])["request_counts"]["completed"] > 0, 120, "the job to get going",
               interval=0.05)
    assert get_job(http, job["id"])["status"] == "in_progress"
    # A sync request in flight across the pause: its status is kept (it may wait, it must not hang).
    during: dict = {}
    caller = threading.Thread(target=lambda: during.update(r=embed(http, model, "across the pause")))
    caller.start()
    # From a connection of its own: the pause holds every client's commands, this one's next ones too.
    pauser = redis_py.Redis.from_url(private.redis.url)
    pauser.ping()
    # Connected before the pause: a new connection's handshake would wait for the pause's end.
    own_reaper = Liveness(redis_py.Redis.from_url(private.redis.url, socket_timeout=None), DEAD_AFTER_S)
    own_reaper.redis.ping()
    assert pauser.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
    paused_at = time.monotonic()
    # A reaper of our own (as in any other API process), sent at once on a connection with no socket
    # timeout: it is first in line when the pause ends, and the worker's stamp is then older than the
    # dead-after time, so the worker is reaped (its chunks handed back) before its own retried commands
    # run. (The worker's commands sent in the same instant timed out and were dropped with their socket.)
    reaped: list = []
    reaper = threading.Thread(target=lambda: reaped.extend(own_reaper.reap()))
    reaper.start()
    time.sleep(PAUSE_MS / 1000 + 0.5)
    reaper.join(30)
    assert [w for w in reaped if w.startswith(f"{model}@")], reaped

    done = wait_finished(http, job["id"], timeout=180)
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": n, "completed": n, "failed": 0}, done["request_counts"]
    assert_every_index_once(http, job["id"], n)
    for i in range(3):
        response = embed(http, model, f"after {i}", timeout=60)
        assert response.status_code == 200, response.text[:300]
    caller.join(120)
    assert during["r"].status_code == 200, during["r"].text[:300]
    assert worker.alive(), worker.log()[-3000:]
    # Its commands were retried through the pause: no chunk was given up to a Redis error (each such
    # hand-back costs an attempt; EMBED_MAX_ATTEMPTS of them fail the chunk's items).
    assert "failed unexpectedly" not in worker.log(), worker.log()[-3000:]
    # It re-registered (its heartbeats lapsed for longer than the dead-after time) and beats again.
    wait_until(lambda: workers_of(http, model) == 1, 30, "the worker to be listed again")
    age = heartbeat_age(client, model)
    assert age is not None and age < DEAD_AFTER_S, age
    assert time.monotonic() - paused_at < 240


class FreezingProxy:
    """A TCP proxy to Redis whose `freeze` turns every connection it has into a half-open one.

    A frozen connection forwards nothing either way and is never closed (the worker sees neither a
    reply nor a FIN, as when a failover, NAT or firewall silently drops the flow); connections
    opened after `freeze` are forwarded normally.
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[dict] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> int:
        with self._lock:
            live = [pair for pair in self._pairs if not pair["done"]]
            for pair in live:
                pair["frozen"] = True
            return len(live)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.listener.close()
            for pair in self._pairs:
                for sock in (pair["client"], pair["upstream"]):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            pair = {"client": client, "upstream": upstream, "frozen": False, "done": False}
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: dict) -> None:
        ends = {pair["client"]: pair["upstream"], pair["upstream"]: pair["client"]}
        while not self._closed:
            if pair["frozen"]:
                time.sleep(0.2)  # read nothing, send nothing, close nothing
                continue
            try:
                readable, _, _ = select.select(list(ends), [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data or pair["frozen"]:
                        if not data:
                            pair["done"] = True
                            for end in ends:
                                end.close()
                            return
                        continue
                    ends[sock].sendall(data)
            except OSError:
                pair["done"] = True
                return


def test_a_half_open_connection_hangs_no_worker_thread(private):
    """Every connection the worker has goes silent at once, mid-job: it carries on over new ones.

    Without socket timeouts, the heartbeat (and any thread on a frozen socket) would wait forever:
    the worker would be reaped and never come back, its sync and bulk work would stall.
    """
    model, n = "halfopen-minilm", 600
    proxy = FreezingProxy(int(private.redis.url.rsplit(":", 1)[1].split("/")[0]))
    try:
        _, url = private.start_api(EMBED_API_KEYS=API_KEY)  # straight to Redis: only the worker's flows die
        worker = private.start_worker(model, EMBED_MODEL_NAME=model, EMBED_REDIS_URL=proxy.url())
        http = session_for(url)
        client = private.redis.client()
        for i in range(3):
            assert embed(http, model, f"before {i}").status_code == 200

        job = submit(http, model=model, input=long_texts(n, "halfopen"))
        wait_until(lambda: get_job(http, job["id"])["request_counts"]["completed"] > 0, 120,
                   "the job to get going", interval=0.05)
        assert proxy.freeze() > 0
        frozen_at = time.monotonic()
        # A message the frozen consumer connection had already asked for (BRPOP) would be lost with it,
        # as with any dead connection; its BRPOP times out on the server within a second.
        time.sleep(2)
        sync_started = time.monotonic()
        response = embed(http, model, "after the freeze", timeout=90)
        sync_took = time.monotonic() - sync_started
        assert response.status_code == 200, response.text[:300]

        done = wait_finished(http, job["id"], timeout=180)
        assert done["status"] == "completed", done
        assert done["request_counts"] == {"total": n, "completed": n, "failed": 0}, done["request_counts"]
        assert_every_index_once(http, job["id"], n)
        assert worker.alive(), worker.log()[-3000:]
        wait_until(lambda: workers_of(http, model) == 1, 30, "the worker to be listed again")
        age = heartbeat_age(client, model)
        assert age is not None and age < DEAD_AFTER_S, age
        # kombu drops a consumer connection whose BRPOP reply is overdue by its health-check interval
        # (10 s here, 25 s by default), and every other socket gives up after its timeout (5 s).
        assert sync_took < 30, f"a sync request took {sync_took:.0f}s after the freeze"
        for i in range(3):
            started = time.monotonic()
            assert embed(http, model, f"after {i}", timeout=60).status_code == 200
            assert time.monotonic() - started < 10
        assert time.monotonic() - frozen_at < 240
    finally:
        private.close()  # the worker first: it drains through the proxy
        proxy.close()
