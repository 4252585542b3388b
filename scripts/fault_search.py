"""A randomized fault search: a private stack, a mixed workload, a seeded schedule of faults, then invariants.

    .venv/bin/python -m scripts.fault_search --seeds 5              # seeds 1..5, file store
    .venv/bin/python -m scripts.fault_search --seed 3 --store s3    # replay one seed on a moto S3 store

Each seed starts a private redis-server (append-only file, fsync always: a job that got 202 must
survive a restart), one API, two or three workers of the default model (the first one speaks to
Redis through a TCP proxy that can drop replies, and so does the API, through another), and, with
--store s3, a moto S3 server. It
computes reference vectors of a pool of texts through /v1/embeddings before any fault, then runs
a workload (native jobs, OpenAI batches, sync /v1/embeddings, cancels, deletes, expiries) while a
schedule of faults drawn from the seed is applied:

  worker_kill    SIGKILL a worker, start a replacement
  worker_stop    SIGSTOP a worker past the dead-after time, then SIGCONT
  worker_term    SIGTERM a worker (it drains), start a replacement
  api_kill       SIGKILL the API (master and gunicorn worker) while a submit or a download is in
                 flight if one comes within a few seconds, restart it on the same port
  redis_restart  SIGTERM redis-server and start it again (same port, same AOF)
  redis_kill     SIGKILL redis-server and start it again (appendfsync always: nothing acknowledged is lost)
  drop_reply     the proxy of worker slot 0 or of the API forwards the next matching command
                 (JOBSCRIPT: a job script, i.e. EVALSHA sha 0 embed: ..., whose reply is not empty,
                 e.g. a claim that got a chunk; JOBARG: a job script naming a job id, e.g.
                 finish, finalize, hand-back, submit, cancel; EVALSHA: any script; ANY: any command) to
                 Redis and closes the worker's connection before relaying the reply, so the
                 client's retry runs a command that already ran

Black box: processes, HTTP, Redis keys (names from embedserve.redis_keys) and the job store's
listing. The one white-box step is `expire`: a job's expiry is moved into the past (its record's
`expires_at` and its score in the expiry index), as if its TTL had passed, so the sweeper expires it.

Invariants checked after each schedule (violation kinds in brackets):
  [job_not_ended] every job and batch ends (completed/failed/cancelled/expired) within the drain time;
  [result_index] a finished job's result holds every index exactly once;
  [result_vector] every vector equals the reference of its text (cosine >= 0.9999);
  [result_bytes] ... to the byte: the workers run the batch-invariant forward (EMBED_DETERMINISTIC,
      on by default on the CPU), so a text's vector does not depend on its batch (--close-enough:
      cosine only, for workers started with it off);
  [result_counts] request_counts agree with the result (vectors = completed, errors = failed;
      completed + failed = total for a completed job);
  [batch_output] a batch's output and error files hold every custom_id exactly once, vectors right;
  [deleted_left] nothing of a deleted job is left in the store (jobs/<id>/) or in Redis (its record);
  [expired_left] nothing of an expired job is left in the store;
  [store_orphan] no jobs/<id>/ prefix in the store that no job owns (except submissions cut by an API
      kill, listed in embed:jobs:pending: the sweeper's after an hour; reported as info);
  [quota_left] / [held_left] the embed:quota:* and embed:held:* hashes are empty once all ended;
  [sync_status] a sync request got 200, or 429/503/504 with the OpenAI error shape; a connection
      error outside an API outage also counts;
  [sync_vector] a sync 200's vectors equal the references;
  [accepted_lost] a job or batch that got its 2xx is not found later (404);
  [index_left] embed:jobs:expiry, embed:jobs:status:* and embed:sched:*:owner:* name only jobs whose record exists.

A failing seed prints its schedule; `--seed S` replays it (the faults and the workload are the
same; their timing against the stack's progress is not).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import requests

from embedserve import redis_keys
from embedserve.jobs.store import open_store
from tests.stack import Process, RedisServer, Stack, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]

MODEL = "all-MiniLM-L6-v2"
API_KEY = "fault-search-key-0001"
DEAD_AFTER_S = 5
FINISHED = {"completed", "failed", "cancelled", "expired"}
RETRYABLE = {429, 503, 504}
COSINE_MIN = 0.9999
WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris", "juniper",
         "kelp", "lichen", "meadow", "nectar", "onyx", "prairie", "quartz", "river", "sable", "tundra")
FAULT_KINDS = ("worker_kill", "worker_stop", "worker_term", "api_kill", "redis_restart", "redis_kill", "drop_reply")
FAULT_WEIGHTS = (3, 2, 2, 2, 1, 1, 5)


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


# --- the plan ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Plan:
    seed: int
    workers: int
    pool: list[str]
    actions: list[tuple[float, str, dict]]  # (seconds after start, kind, params): the workload
    faults: list[tuple[float, str, dict]]  # (seconds after start, kind, params)
    duration: float


def text_pool(rng: random.Random, n: int) -> list[str]:
    out = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 24)))
        out.append(f"item {i} {words}")
    return out


def draw_plan(seed: int, opts) -> Plan:
    rng = random.Random(seed)
    pool = text_pool(rng, opts.pool)
    workers = rng.choice((2, 3))
    duration = opts.duration
    actions: list[tuple[float, str, dict]] = []
    for k in range(opts.jobs):
        t = rng.uniform(0, duration * 0.7)
        if rng.random() < 0.3:
            lines = rng.randint(3, max(3, opts.max_inputs // 8))
            body = [[rng.randrange(len(pool)) for _ in range(rng.randint(1, 6))] for _ in range(lines)]
            actions.append((t, "batch", {"ref": k, "lines": body, "cancel_at": None}))
            if rng.random() < 0.2:
                actions.append((t + rng.uniform(0.5, 6), "batch_cancel", {"ref": k}))
            continue
        n = rng.randint(10, opts.max_inputs)
        actions.append((t, "job", {"ref": k, "texts": [rng.randrange(len(pool)) for _ in range(n)]}))
        fate = rng.choices(("run", "cancel", "delete", "expire", "cancel_delete"), (6, 1, 1, 1, 1))[0]
        later = t + rng.uniform(0.2, 8)
        if fate in ("cancel", "cancel_delete"):
            actions.append((later, "cancel", {"ref": k}))
        if fate == "delete":
            actions.append((later, "delete", {"ref": k}))
        if fate == "cancel_delete":
            actions.append((later + rng.uniform(0.1, 3), "delete", {"ref": k}))
        if fate == "expire":
            actions.append((later, "expire", {"ref": k}))
    actions.sort(key=lambda a: a[0])
    faults = []
    t = rng.uniform(1, 4)
    while t < duration:
        kind = rng.choices(FAULT_KINDS, FAULT_WEIGHTS)[0]
        params: dict = {}
        if kind.startswith("worker_"):
            params["slot"] = rng.randrange(workers)
        if kind == "worker_stop":
            params["seconds"] = round(DEAD_AFTER_S + rng.uniform(1, 5), 1)
        if kind == "drop_reply":
            params["match"] = rng.choice(("JOBSCRIPT", "JOBSCRIPT", "JOBARG", "JOBARG", "EVALSHA", "ANY"))
            params["count"] = rng.randint(1, 3)
            params["target"] = rng.choice(("worker0", "worker0", "api"))
        faults.append((round(t, 2), kind, params))
        t += rng.uniform(opts.fault_gap * 0.5, opts.fault_gap * 1.5)
    return Plan(seed, workers, pool, actions, faults, duration)


# --- a reply-dropping proxy --------------------------------------------------------------------


class RespCommands:
    """Finds the command names in a client's stream of RESP arrays (what redis-py sends)."""

    def __init__(self):
        self.buf = b""

    def feed(self, data: bytes) -> list[list[bytes]]:
        self.buf += data
        found = []
        while True:
            parsed = self._one()
            if parsed is None:
                return found
            found.append(parsed)

    def _one(self):
        buf = self.buf
        if not buf:
            return None
        if not buf.startswith(b"*"):
            self.buf = b""  # not an array: inline command; we do not follow those
            return None
        end = buf.find(b"\r\n")
        if end < 0:
            return None
        count, pos, args = int(buf[1:end]), end + 2, []
        for _ in range(count):
            end = buf.find(b"\r\n", pos)
            if end < 0 or buf[pos:pos + 1] != b"$":
                return None
            size = int(buf[pos + 1:end])
            if len(buf) < end + 2 + size + 2:
                return None
            args.append(buf[end + 2:end + 2 + size][:120])
            pos = end + 2 + size + 2
        self.buf = buf[pos:]
        return args


class DropProxy:
    """127.0.0.1:port -> the Redis port; `arm(match, n)` makes the next n matching commands lose their reply."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.armed: list[str] = []  # match kinds, one per drop to do
        self.dropped: list[tuple[float, str]] = []  # (time, command) of each drop done
        self.stopping = False
        self.sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self, match: str, count: int) -> None:
        with self.lock:
            self.armed += [match] * count

    def disarm(self) -> None:
        with self.lock:
            self.armed.clear()

    def close(self) -> None:
        self.stopping = True
        self.listener.close()
        for sock in list(self.sockets):
            _close(sock)

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            state = {"poisoned": False}
            self.sockets.update((client, server))
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(client, server, state), daemon=True).start()

    def _take(self, command: list[bytes], state: dict) -> bool:
        """Whether to drop this command's reply now; a JOBSCRIPT match is only noted (state["maybe"]):
        its reply is dropped if it carries something (a claim that got a chunk, not an idle one)."""
        name = command[0].upper().decode(errors="replace") if command else ""
        # The job scripts (embedserve/jobs/scripts.py, scheduler.py) take no keys and the key prefix first:
        # EVALSHA sha 0 embed: ...; the heartbeat's, the reaper's, the sweeper lock's and kombu's name keys.
        job_script = name == "EVALSHA" and command[2:4] == [b"0", b"embed:"]
        names_job = job_script and any(b"job_" in a for a in command[4:])
        what = " ".join(a.decode(errors="replace")[:40] for a in command[:6])
        with self.lock:
            for i, match in enumerate(self.armed):
                if match == "ANY" or match == name or (match == "JOBARG" and names_job):
                    del self.armed[i]
                    self.dropped.append((time.monotonic(), what))
                    return True
                if match == "JOBSCRIPT" and job_script:
                    state["maybe"] = what
                    return False
        return False

    def _up(self, client, server, state) -> None:
        parser = RespCommands()
        try:
            while data := client.recv(65536):
                state["maybe"] = None
                if not state["poisoned"] and self.armed:
                    try:
                        commands = parser.feed(data)
                    except ValueError:
                        parser.buf, commands = b"", []
                    if any(self._take(c, state) for c in commands):
                        state["poisoned"] = True  # before it reaches Redis: its reply is never relayed
                else:
                    parser.buf = b"" if not self.armed else parser.buf
                server.sendall(data)
                if state["poisoned"]:
                    # Let Redis run it (the reply arriving in _down closes both), or close after a second.
                    threading.Timer(1.0, lambda: (_close(client), _close(server))).start()
                    return
        except OSError:
            pass
        _close(client), _close(server)
        self.sockets.discard(client), self.sockets.discard(server)

    def _down(self, client, server, state) -> None:
        try:
            while data := server.recv(65536):
                if state["poisoned"]:
                    break
                what = state.get("maybe")
                if what and not data.startswith(EMPTY_REPLIES) and self._consume("JOBSCRIPT", what):
                    break  # the command ran and answered something: the client never hears it
                client.sendall(data)
        except OSError:
            pass
        _close(client), _close(server)
        self.sockets.discard(client), self.sockets.discard(server)

    def _consume(self, match: str, what: str) -> bool:
        with self.lock:
            if match in self.armed:
                self.armed.remove(match)
                self.dropped.append((time.monotonic(), what + " (non-empty reply)"))
                return True
        return False


# Replies that carry nothing: nil, an empty array, RESP3 null, an empty string.
EMPTY_REPLIES = (b"*-1\r\n", b"$-1\r\n", b"*0\r\n", b"_\r\n", b"$0\r\n")


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


# --- the stack ---------------------------------------------------------------------------------


class Cluster:
    """Redis (AOF, fsync always), the proxy, one API on a fixed port, worker slots; all stopped by close()."""

    def __init__(self, plan: Plan, log_dir: Path, store: str, s3=None):
        self.plan = plan
        self.redis = RedisServer.start("--appendonly", "yes", "--appendfsync", "always")
        env = {"EMBED_WORKER_DEAD_AFTER": str(DEAD_AFTER_S), "EMBED_DRAIN_TIMEOUT": "5",
               "EMBED_SYNC_TIMEOUT": "20", "EMBED_COLD_START_TIMEOUT": "15", "EMBED_MAX_ATTEMPTS": "10",
               "EMBED_BULK_SLOTS": "3", "EMBED_LOG_LEVEL": "INFO"}
        self.store_url = (log_dir / "store").resolve().as_uri()
        if store == "s3":
            self.store_url = s3.url(f"fs-{plan.seed}-{os.getpid()}-{int(time.time())}")
            env.update(s3.env)
            os.environ.update(s3.env)  # for this process's own store listing
        env["EMBED_JOB_STORE"] = self.store_url
        self.stack = Stack(redis=self.redis, log_dir=log_dir, base_env=env)
        redis_port = int(self.redis.url.rsplit(":", 1)[1].split("/")[0])
        self.proxies = {"worker0": DropProxy(redis_port), "api": DropProxy(redis_port)}
        self.api_port = free_port()
        self.api: Process | None = None
        self.api_down: list[list[float]] = []  # [killed_at, healthy_at]
        self.workers: dict[int, Process] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start_api(self) -> None:
        proc = self.stack.spawn("api", "api", EMBED_PORT=str(self.api_port), EMBED_HOST="127.0.0.1",
                                EMBED_API_WORKERS="1", EMBED_API_KEYS=API_KEY, EMBED_MODELS=MODEL,
                                EMBED_REDIS_URL=self.proxies["api"].url)

        def healthy():
            if not proc.alive():
                raise AssertionError(f"API exited:\n{proc.log()[-3000:]}")
            try:
                return requests.get(self.url + "/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_until(healthy, 90, "the API to answer /health", interval=0.1)
        self.api = proc

    def worker_env(self, slot: int) -> dict:
        return {"EMBED_REDIS_URL": self.proxies["worker0"].url} if slot == 0 else {}

    def start_worker(self, slot: int) -> None:
        """Start the worker of `slot` and wait for Celery's "ready." (a start that dies, e.g. while Redis
        restarts, is tried again: that is not what this search looks for)."""
        for attempt in range(3):
            proc = self.stack.spawn(f"worker{slot}", "worker", **self.worker_env(slot))
            with self.lock:
                self.workers[slot] = proc
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and proc.alive() and "ready." not in proc.log():
                time.sleep(0.2)
            if proc.alive() and "ready." in proc.log():
                return
            proc.kill()
            log(f"worker slot {slot} did not start (try {attempt + 1}): {proc.log()[-600:]}")
        raise RuntimeError(f"worker slot {slot} did not start")

    def start_workers(self) -> None:
        threads = [threading.Thread(target=self.start_worker, args=(slot,)) for slot in range(self.plan.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(self.workers) != self.plan.workers:
            raise RuntimeError("a worker did not start")

    def close(self) -> None:
        self.stack.close()  # first: draining workers still reach Redis through the proxy
        for proxy in self.proxies.values():
            proxy.close()
        self.redis.stop()


# --- the client side -----------------------------------------------------------------------------


@dataclasses.dataclass
class Tracked:
    kind: str  # "job" | "batch"
    ref: int
    id: str
    texts: list | None = None  # job: pool indices; batch: list of lists
    job_id: str = ""  # a batch's job
    deleted: bool = False
    deleting: bool = False
    expired_by_us: bool = False
    cancelled: bool = False
    final: dict | None = None
    checked: bool = False


class Run:
    """One seed: the workload, the faults, the checks."""

    def __init__(self, plan: Plan, cluster: Cluster, opts):
        self.plan, self.cluster, self.opts = plan, cluster, opts
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {API_KEY}"
        self.refs: np.ndarray | None = None
        self.tracked: dict[int, Tracked] = {}
        self.lost_submits: list[dict] = []  # submissions whose reply never came
        self.violations: list[tuple[str, str]] = []
        self.info: list[str] = []
        self.done_faults: list[str] = []
        self.inflight = Counter()  # "submit" / "download" in progress
        self.stop_load = threading.Event()
        self.sync_stats = Counter()
        self.exact = Counter()
        self.lock = threading.Lock()
        self.t0 = 0.0
        self.redis = cluster.redis.client()

    def violate(self, kind: str, detail: str) -> None:
        with self.lock:
            self.violations.append((kind, detail))
        log(f"VIOLATION [{kind}] {detail}")

    def now(self) -> float:
        return time.monotonic() - self.t0

    # HTTP with retries across API outages ---------------------------------------------------
    def busy(self, what: str, delta: int) -> None:
        if what:
            with self.lock:
                self.inflight[what] += delta

    def call(self, method: str, path: str, tries: int = 40, what: str = "", **kw) -> requests.Response | None:
        """Retry connection errors and 5xx/429 until an answer (None when tries run out)."""
        timeout = kw.pop("timeout", 60)
        for i in range(tries):
            self.busy(what, 1)
            try:
                response = self.http.request(method, self.cluster.url + path, timeout=timeout, **kw)
            except requests.RequestException:
                response = None
            finally:
                self.busy(what, -1)
            if response is not None and response.status_code not in (429, 500, 502, 503, 504):
                return response
            time.sleep(min(2.0, 0.2 * (i + 1)))
        return None

    # references ---------------------------------------------------------------------------------
    def compute_refs(self) -> None:
        rows = []
        for start in range(0, len(self.plan.pool), 64):
            response = self.call("POST", "/v1/embeddings", json={"model": MODEL, "input": self.plan.pool[start:start + 64]},
                                 timeout=120)
            if response is None or response.status_code != 200:
                raise RuntimeError(f"reference embeddings failed: {None if response is None else response.text[:300]}")
            rows += [d["embedding"] for d in response.json()["data"]]
        self.refs = np.asarray(rows, dtype=np.float32)

    def check_vector(self, kind: str, where: str, text_index: int, vector) -> bool:
        got = np.asarray(vector, dtype=np.float32)
        ref = self.refs[text_index]
        if got.shape != ref.shape:
            self.violate(kind, f"{where}: shape {got.shape} != {ref.shape}")
            return False
        cos = float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref) + 1e-12))
        same = got.tobytes() == ref.tobytes()
        self.exact["bytes_equal" if same else "close"] += 1
        if cos < COSINE_MIN:
            self.violate(kind, f"{where}: cosine {cos:.6f} to the reference of text {text_index}")
            return False
        if not same and not self.opts.close_enough:
            self.violate("result_bytes", f"{where}: other bytes than the reference of text {text_index} "
                                         f"(cosine {cos:.9f})")
            return False
        return True

    # workload -----------------------------------------------------------------------------------
    def run_actions(self) -> None:
        for at, kind, params in self.plan.actions:
            delay = at - self.now()
            if delay > 0:
                time.sleep(delay)
            try:
                getattr(self, f"act_{kind}")(**params)
            except Exception:  # noqa: BLE001 - a broken action is reported, the rest go on
                self.violate("harness", f"action {kind} {params.get('ref')}: {traceback.format_exc(limit=3)}")

    def act_job(self, ref: int, texts: list[int]) -> None:
        body = {"model": MODEL, "input": [self.plan.pool[i] for i in texts]}
        accepted = self.submit_until_accepted("job", ref, "/v1/jobs", body, 202, {"texts": texts})
        if accepted is not None:
            self.tracked[ref] = Tracked("job", ref, accepted["id"], texts)

    def submit_until_accepted(self, kind: str, ref: int, path: str, body: dict, ok: int, lost: dict) -> dict | None:
        """POST `body` until it gets `ok` (its JSON returned) or a status no retry helps (a violation); a
        submission whose reply never came is noted in lost_submits (`lost` says what it was), since it
        may have been accepted all the same."""
        for attempt in range(30):
            self.busy("submit", 1)
            try:
                response = self.http.post(self.cluster.url + path, json=body, timeout=60)
            except requests.RequestException as exc:
                response = None
                self.lost_submits.append({"kind": kind, "ref": ref, **lost, "error": type(exc).__name__})
            finally:
                self.busy("submit", -1)
            if response is not None and response.status_code == ok:
                return response.json()
            if response is not None and response.status_code not in (429, 500, 502, 503, 504):
                self.violate("submit", f"{kind} {ref}: {response.status_code} {response.text[:200]}")
                return None
            time.sleep(min(2.0, 0.2 * (attempt + 1)))
        self.info.append(f"{kind} {ref}: never accepted")
        return None

    def act_batch(self, ref: int, lines: list[list[int]], cancel_at=None) -> None:
        content = b"".join(json.dumps({"custom_id": f"r{ref}-{i}", "method": "POST", "url": "/v1/embeddings",
                                       "body": {"model": MODEL, "input": [self.plan.pool[t] for t in line]}}).encode()
                           + b"\n" for i, line in enumerate(lines))
        uploaded = self.call("POST", "/v1/files", what="submit", data={"purpose": "batch"},
                             files={"file": (f"b{ref}.jsonl", content)})  # bytes: a retry sends them again
        if uploaded is None or uploaded.status_code != 200:
            self.info.append(f"batch {ref}: upload failed {None if uploaded is None else uploaded.status_code}")
            return
        file_id = uploaded.json()["id"]
        body = {"input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"}
        batch = self.submit_until_accepted("batch", ref, "/v1/batches", body, 200, {"lines": lines})
        if batch is not None:
            self.tracked[ref] = Tracked("batch", ref, batch["id"], lines)

    def act_batch_cancel(self, ref: int) -> None:
        item = self.tracked.get(ref)
        if item:
            response = self.call("POST", f"/v1/batches/{item.id}/cancel")
            item.cancelled = response is not None and response.status_code == 200

    def act_cancel(self, ref: int) -> None:
        item = self.tracked.get(ref)
        if item:
            response = self.call("POST", f"/v1/jobs/{item.id}/cancel")
            if response is not None and response.status_code == 404:
                self.violate("accepted_lost", f"job {item.id} (ref {ref}): cancel got 404")
            item.cancelled = True

    def act_delete(self, ref: int) -> None:
        item = self.tracked.get(ref)
        if item:
            item.deleting = True  # from now on a 404 is expected
            response = self.call("DELETE", f"/v1/jobs/{item.id}")
            if response is not None and response.status_code == 200:
                item.deleted = True
            else:
                self.violate("accepted_lost" if response is not None and response.status_code == 404 else "delete",
                             f"job {item.id} (ref {ref}): delete got {None if response is None else response.status_code}")

    def act_expire(self, ref: int) -> None:
        """Move the job's expiry into the past, as if its TTL had run out (see the module docstring)."""
        item = self.tracked.get(ref)
        if not item:
            return
        for _ in range(40):
            try:
                past = self.redis.time()[0] - 1
                pipe = self.redis.pipeline(transaction=True)
                if not self.redis.exists(redis_keys.job(item.id)):
                    return
                pipe.hset(redis_keys.job(item.id), "expires_at", past)
                pipe.zadd(redis_keys.jobs_expiry(), {item.id: past})
                pipe.execute()
                item.expired_by_us = True
                return
            except Exception:  # noqa: BLE001 - Redis restarting
                time.sleep(0.5)

    def sync_load(self, rng: random.Random) -> None:
        while not self.stop_load.is_set():
            picks = [rng.randrange(len(self.plan.pool)) for _ in range(rng.randint(1, 16))]
            started = time.monotonic()
            try:
                response = self.http.post(self.cluster.url + "/v1/embeddings", timeout=90,
                                          json={"model": MODEL, "input": [self.plan.pool[i] for i in picks]})
            except requests.RequestException as exc:
                if not self.api_was_down(started, time.monotonic()):
                    self.violate("sync_status", f"connection error outside an API outage: {type(exc).__name__}: {exc!s:.200}")
                self.sync_stats["conn_error"] += 1
                time.sleep(0.3)
                continue
            self.sync_stats[response.status_code] += 1
            if response.status_code == 200:
                for d in response.json()["data"]:
                    self.check_vector("sync_vector", f"sync t={self.now():.1f}", picks[d["index"]], d["embedding"])
            elif response.status_code in RETRYABLE:
                try:
                    err = response.json()["error"]
                    ok = isinstance(err.get("message"), str) and "type" in err and "code" in err
                except (ValueError, KeyError, TypeError, AttributeError):
                    ok = False
                if not ok:
                    self.violate("sync_status", f"{response.status_code} without the OpenAI error shape: {response.text[:200]}")
            else:
                self.violate("sync_status", f"{response.status_code} t={self.now():.1f}: {response.text[:300]}")
            time.sleep(rng.uniform(0.1, 0.6))

    def api_was_down(self, start: float, end: float) -> bool:
        for window in self.cluster.api_down:
            killed, healthy = window[0], (window[1] if len(window) > 1 else float("inf"))
            if start <= healthy + 1 and end >= killed - 1:
                return True
        return False

    # faults -------------------------------------------------------------------------------------
    def run_faults(self) -> None:
        threads = []
        for at, kind, params in self.plan.faults:
            delay = at - self.now()
            if delay > 0:
                time.sleep(delay)
            note = f"t={self.now():.1f} {kind} {params}"
            log("fault", note)
            self.done_faults.append(note)
            try:
                thread = getattr(self, f"fault_{kind}")(**params)
            except Exception:  # noqa: BLE001
                self.violate("harness", f"fault {note}: {traceback.format_exc(limit=4)}")
                continue
            if thread is not None:
                threads.append(thread)
        for thread in threads:
            thread.join(300)

    def _background(self, fn, *args) -> threading.Thread:
        def safe():
            try:
                fn(*args)
            except Exception:  # noqa: BLE001
                self.violate("harness", f"{fn.__name__}: {traceback.format_exc(limit=4)}")
        thread = threading.Thread(target=safe, daemon=True)
        thread.start()
        return thread

    def _worker(self, slot: int) -> Process | None:
        proc = self.cluster.workers.get(slot)
        return proc if proc is not None and proc.alive() else None

    def fault_worker_kill(self, slot: int):
        proc = self._worker(slot)
        if proc is None:
            return None
        proc.kill()
        return self._background(self.cluster.start_worker, slot)

    def fault_worker_term(self, slot: int):
        proc = self._worker(slot)
        if proc is None:
            return None
        proc.popen.send_signal(signal.SIGTERM)

        def replace():
            try:
                proc.popen.wait(60)
            except Exception:  # noqa: BLE001
                self.violate("drain", f"worker slot {slot} did not exit within 60 s of SIGTERM")
                proc.kill()
            self.cluster.start_worker(slot)
        return self._background(replace)

    def fault_worker_stop(self, slot: int, seconds: float):
        proc = self._worker(slot)
        if proc is None:
            return None
        proc.popen.send_signal(signal.SIGSTOP)

        def resume():
            time.sleep(seconds)
            proc.popen.send_signal(signal.SIGCONT)
        return self._background(resume)

    def fault_api_kill(self):
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not (self.inflight["submit"] or self.inflight["download"]):
            time.sleep(0.005)
        during = [k for k, v in self.inflight.items() if v]
        window = [self.now()]
        self.cluster.api_down.append([time.monotonic()])
        self.cluster.api.kill_tree()
        self.done_faults[-1] += f" (in flight: {','.join(during) or 'nothing'})"
        self.cluster.start_api()
        self.cluster.api_down[-1].append(time.monotonic())
        window.append(self.now())

    def fault_redis_restart(self):
        self.cluster.redis.restart()

    def fault_redis_kill(self):
        self.cluster.redis.process.kill()
        self.cluster.redis._launch()

    def fault_drop_reply(self, match: str, count: int, target: str = "worker0"):
        self.cluster.proxies[target].arm(match, count)

    # polling and checks -------------------------------------------------------------------------
    def poll_until_ended(self, timeout: float, forever_until: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [t for t in list(self.tracked.values()) if not t.deleted and t.final is None]
            for item in pending:
                if item.deleted:
                    continue
                path = f"/v1/jobs/{item.id}" if item.kind == "job" else f"/v1/batches/{item.id}"
                response = self.call("GET", path, tries=3)
                if response is None:
                    continue
                if response.status_code == 404:
                    if not (item.deleted or item.deleting):
                        self.violate("accepted_lost", f"{item.kind} {item.id} (ref {item.ref}) answers 404")
                        item.final = {"status": "lost"}
                    continue
                body = response.json()
                if body["status"] in FINISHED:
                    self.check_finished(item, body)
            if forever_until is not None:
                if forever_until.is_set():
                    forever_until = None
                else:
                    time.sleep(0.5)
                    continue
            if all(t.deleted or t.final is not None for t in self.tracked.values()):
                return
            time.sleep(0.5)
        for item in self.tracked.values():
            if not item.deleted and item.final is None:
                response = self.call("GET", f"/v1/{item.kind}s/{item.id}", tries=3)
                self.violate("job_not_ended", f"{item.kind} {item.id} (ref {item.ref}) still "
                             f"{None if response is None else response.text[:400]}")

    def check_finished(self, item: Tracked, body: dict) -> None:
        item.final = body
        if item.deleted or item.deleting:
            return
        if item.kind == "job":
            self.check_job_result(item, body)
        else:
            self.check_batch_result(item, body)

    def check_job_result(self, item: Tracked, body: dict) -> None:
        response = self.call("GET", f"/v1/jobs/{item.id}/result", what="download",
                             headers={"Accept": "application/x-ndjson"}, timeout=120)
        if item.deleted or item.deleting:
            return
        if response is None:
            self.violate("result_index", f"job {item.id}: no result answer")
            return
        if response.status_code in (404, 410) and (item.expired_by_us or item.deleted):
            return  # expired or deleted under the download
        if body["status"] == "expired" and response.status_code == 410:
            return
        if response.status_code != 200:
            self.violate("result_index", f"job {item.id} ({body['status']}): result {response.status_code} {response.text[:200]}")
            return
        try:
            lines = [json.loads(line) for line in response.text.splitlines()]
        except ValueError:
            self.violate("result_index", f"job {item.id}: result is not ndjson (cut stream?): ...{response.text[-200:]!r}")
            return
        total = len(item.texts) if item.texts is not None else body["request_counts"]["total"]
        indices = [line.get("index") for line in lines]
        counts = Counter(indices)
        doubled = sorted(i for i, c in counts.items() if c > 1)
        missing = sorted(set(range(total)) - set(counts))
        extra = sorted(i for i in counts if not isinstance(i, int) or not 0 <= i < total)
        if doubled or missing or extra:
            self.violate("result_index", f"job {item.id} ({body['status']}, {total} inputs): doubled {doubled[:10]} "
                         f"missing {missing[:10]} ({len(missing)}) out of range {extra[:10]}")
        vectors = errors = 0
        bad = 0
        for line in lines:
            index = line.get("index")
            if "embedding" in line and isinstance(index, int) and 0 <= index < total:
                vectors += 1
                if item.texts is not None and not self.check_vector("result_vector", f"job {item.id} index {index}",
                                                                    item.texts[index], line["embedding"]):
                    bad += 1
                    if bad > 3:
                        break
            elif "error" in line:
                errors += 1
        rc = body["request_counts"]
        if rc["total"] != total:
            self.violate("result_counts", f"job {item.id}: request_counts.total {rc['total']} != {total} submitted")
        if rc["completed"] != vectors:
            self.violate("result_counts", f"job {item.id} ({body['status']}): request_counts.completed {rc['completed']} "
                         f"!= {vectors} vectors in the result")
        if body["status"] == "completed" and (rc["failed"] != errors or rc["completed"] + rc["failed"] != total):
            self.violate("result_counts", f"job {item.id} completed: counts {rc} but result has {vectors} vectors, {errors} errors")
        if errors and body["status"] == "completed":
            sample = next(line["error"] for line in lines if "error" in line)
            self.info.append(f"job {item.id}: {errors} items failed, e.g. {sample.get('code')}: {sample.get('message', '')[:100]}")

    def check_batch_result(self, item: Tracked, body: dict) -> None:
        if item.texts is None:
            return  # an orphan we cannot tie to its submission
        expected = {f"r{item.ref}-{i}": line for i, line in enumerate(item.texts)}
        seen: Counter = Counter()
        outputs = []
        for key in ("output_file_id", "error_file_id"):
            if body.get(key):
                response = self.call("GET", f"/v1/files/{body[key]}/content", what="download", timeout=120)
                if response is None or response.status_code != 200:
                    self.violate("batch_output", f"batch {item.id}: {key} content {None if response is None else response.status_code}")
                    continue
                for raw in response.text.splitlines():
                    line = json.loads(raw)
                    seen[line["custom_id"]] += 1
                    outputs.append(line)
        if body["status"] == "completed":
            missing = sorted(set(expected) - set(seen))
            if missing:
                self.violate("batch_output", f"batch {item.id} completed: custom_ids missing {missing[:10]}")
        doubled = sorted(k for k, c in seen.items() if c > 1)
        unknown = sorted(set(seen) - set(expected))
        if doubled or unknown:
            self.violate("batch_output", f"batch {item.id}: custom_ids doubled {doubled[:10]} unknown {unknown[:10]}")
        ok = 0
        for line in outputs:
            cid = line["custom_id"]
            res = line.get("response") or {}
            if res.get("status_code") == 200 and cid in expected:
                data = res["body"]["data"]
                if [d["index"] for d in data] != list(range(len(expected[cid]))):
                    self.violate("batch_output", f"batch {item.id} {cid}: indices {[d['index'] for d in data]}")
                    continue
                ok += 1
                for d in data:
                    self.check_vector("batch_output", f"batch {item.id} {cid}[{d['index']}]", expected[cid][d["index"]], d["embedding"])
        rc = body.get("request_counts") or {}
        if rc and rc.get("completed") != ok:
            self.violate("result_counts", f"batch {item.id} ({body['status']}): request_counts {rc} but {ok} lines succeeded")

    def discover_orphans(self) -> None:
        """Jobs and batches created by a submission whose reply was lost (the API died under it)."""
        known = {t.id for t in self.tracked.values()}
        for kind in ("jobs", "batches"):
            after = None
            for _ in range(50):
                response = self.call("GET", f"/v1/{kind}?limit=100" + (f"&after={after}" if after else ""))
                if response is None or response.status_code != 200:
                    break
                page = response.json()
                for obj in page["data"]:
                    if obj["id"] not in known:
                        self.info.append(f"{kind[:-1]} {obj['id']} created by a submission whose reply was lost "
                                         f"(status {obj['status']})")
                        key = -1 - len([t for t in self.tracked if t < 0])
                        ref, texts = self._guess_orphan(kind, obj)
                        self.tracked[key] = Tracked(kind[:-1], ref, obj["id"], texts)
                if not page.get("has_more") or not page["data"]:
                    break
                after = page["data"][-1]["id"]

    def _guess_orphan(self, kind: str, obj: dict):
        """The lost submission this orphan came from, if its size names one."""
        if kind == "jobs":
            total = obj["request_counts"]["total"]
            same = [s for s in self.lost_submits if s["kind"] == "job" and len(s["texts"]) == total]
            return (same[0]["ref"], same[0]["texts"]) if same else (-1, None)  # None: indices checked, not vectors
        same = [s for s in self.lost_submits if s["kind"] == "batch"]
        return (same[0]["ref"], same[0]["lines"]) if len(same) == 1 else (-1, None)

    def final_checks(self) -> None:
        r = self.redis
        # The store: nothing of deleted or expired jobs, nothing unowned.
        store = open_store(self.cluster.store_url)
        job_ids: dict[str, Tracked] = {}
        for item in self.tracked.values():
            if item.kind == "job":
                job_ids[item.id] = item
            else:
                batch = r.hgetall(redis_keys.batch(item.id))
                jid = batch.get(b"job_id", b"").decode()
                if jid:
                    item.job_id = jid
                    job_ids[jid] = item

        def leftovers() -> dict[str, list[str]]:
            by_job = defaultdict(list)
            for key in store.list("jobs/"):
                by_job[key.split("/")[1]].append(key)
            return by_job

        def bad_now() -> list[tuple[str, str]]:
            out = []
            for jid, keys in leftovers().items():
                item = job_ids.get(jid)
                status = (item.final or {}).get("status") if item else None
                if item is not None and item.deleted:
                    out.append(("deleted_left", f"job {jid} (ref {item.ref}) deleted, store keeps {keys[:5]} ({len(keys)})"))
                elif item is not None and status == "expired":
                    out.append(("expired_left", f"job {jid} (ref {item.ref}) expired, store keeps {keys[:5]} ({len(keys)})"))
                elif item is None and r.zscore(redis_keys.jobs_pending(), jid) is None:
                    out.append(("store_orphan", f"jobs/{jid}/ has {keys[:5]} ({len(keys)}) and no job, not pending; "
                                f"record exists: {bool(r.exists(redis_keys.job(jid)))}"))
            return out

        # Expired jobs' data goes at the next sweep (every 30 s in every process); give it two.
        deadline = time.monotonic() + 75
        while bad_now() and time.monotonic() < deadline:
            time.sleep(2)
        for kind, detail in bad_now():
            self.violate(kind, detail)
        pending = [i.decode() for i in r.zrange(redis_keys.jobs_pending(), 0, -1)]
        for jid in pending:
            if jid in leftovers() and not r.exists(redis_keys.job(jid)):
                self.info.append(f"jobs/{jid}/ left by a cut submission (in embed:jobs:pending; swept after an hour)")
        for item in self.tracked.values():
            if item.deleted and r.exists(redis_keys.job(item.id)):
                self.violate("deleted_left", f"job {item.id}: record {redis_keys.job(item.id)} still in Redis: "
                             f"{r.hgetall(redis_keys.job(item.id))}")

        # The job indexes name only jobs that exist (a record unlinked behind the scripts' back leaves ids here).
        indexes = [redis_keys.jobs_expiry(), *(k.decode() for k in r.scan_iter(match=redis_keys.jobs_by_status("*"))),
                   *(k.decode() for k in r.scan_iter(match=redis_keys.sched_owner("*", "*")))]
        for index in indexes:
            for raw in r.zrange(index, 0, -1):
                jid = raw.decode()
                if jid.startswith("job_") and not r.exists(redis_keys.job(jid)):
                    item = job_ids.get(jid)
                    self.violate("index_left", f"{index} names {jid} whose record {redis_keys.job(jid)} is gone "
                                 f"({f'ours: ref {item.ref} {item.kind}' if item else 'not a job we know'})")

        # Quota and held hashes empty once everything ended (a dead worker's held goes at the reaper's pass).
        def small_keys():
            found = {}
            for pattern in (redis_keys.quota("*"), redis_keys.held("*")):
                for key in r.scan_iter(match=pattern):
                    if r.type(key) == b"hash" and r.hlen(key):
                        found[key.decode()] = {k.decode(): v.decode() for k, v in r.hgetall(key).items()}
            return found
        deadline = time.monotonic() + DEAD_AFTER_S * 4
        while small_keys() and time.monotonic() < deadline:
            time.sleep(1)
        for key, value in small_keys().items():
            kind = "quota_left" if key.startswith(redis_keys.quota("")) else "held_left"
            described = {k: (v, (job_ids[k.split('|')[0]].final or {}).get("status") if k.split('|')[0] in job_ids else "?")
                         for k, v in list(value.items())[:8]}
            self.violate(kind, f"{key} = {described} (entry -> (value, status of that job))")


# --- one seed ------------------------------------------------------------------------------------


def run_seed(seed: int, opts, s3=None) -> dict:
    plan = draw_plan(seed, opts)
    started = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix=f"fault-search-{seed}-"))
    log(f"seed {seed}: {plan.workers} workers, {len(plan.pool)} texts, {sum(a[1] in ('job', 'batch') for a in plan.actions)} "
        f"jobs/batches, {len(plan.faults)} faults, store {opts.store}, logs {log_dir}")
    cluster = Cluster(plan, log_dir, opts.store, s3)
    run = None
    try:
        cluster.start_workers()
        cluster.start_api()
        run = Run(plan, cluster, opts)
        run.compute_refs()
        setup = time.monotonic() - started
        log(f"seed {seed}: stack up and references computed in {setup:.0f}s")
        run.t0 = time.monotonic()
        load_rng = random.Random(seed * 7919 + 1)
        loader = threading.Thread(target=run.sync_load, args=(load_rng,), daemon=True)
        loader.start()
        actions = threading.Thread(target=run.run_actions, daemon=True)
        actions.start()
        faults = threading.Thread(target=run.run_faults, daemon=True)
        faults.start()
        faults_done = threading.Event()

        def mark():
            faults.join()
            actions.join()
            faults_done.set()
        threading.Thread(target=mark, daemon=True).start()
        # Poll while the schedule runs, then until everything ends (bounded).
        run.poll_until_ended(plan.duration + 600, forever_until=faults_done)
        for proxy in cluster.proxies.values():
            proxy.disarm()
        run.poll_until_ended(opts.drain)
        run.discover_orphans()
        run.poll_until_ended(opts.drain)
        run.stop_load.set()
        loader.join(120)
        run.final_checks()
    except Exception:  # noqa: BLE001
        if run is None:
            raise
        run.violate("harness", traceback.format_exc(limit=6))
    finally:
        if run is not None:
            run.stop_load.set()
        cluster.close()
    wall = time.monotonic() - started
    result = {"seed": seed, "store": opts.store, "wall_s": round(wall, 1), "violations": run.violations,
              "faults": run.done_faults, "dropped": sorted((round(t - run.t0, 1), f"{name}: {c}") for name, proxy in cluster.proxies.items()
                                for t, c in proxy.dropped),
              "sync": dict(run.sync_stats), "vectors": dict(run.exact), "info": run.info, "log_dir": str(log_dir),
              "jobs": Counter("deleted" if t.deleted else (t.final or {}).get("status", "?") for t in run.tracked.values())}
    report(result)
    return result


def report(result: dict) -> None:
    status = "CLEAN" if not result["violations"] else f"{len(result['violations'])} VIOLATIONS"
    log(f"seed {result['seed']} ({result['store']}): {status} in {result['wall_s']}s; jobs {dict(result['jobs'])}; "
        f"sync {result['sync']}; vectors {result['vectors']}")
    for line in result["info"]:
        log("  info:", line)
    if not result["violations"]:
        log(f"  schedule: {'; '.join(result['faults'])}; {len(result['dropped'])} replies dropped")
    else:
        log(f"  schedule of seed {result['seed']} (replay: -m scripts.fault_search --seed {result['seed']} --store {result['store']}):")
        for fault in result["faults"]:
            log("   ", fault)
        for at, command in result["dropped"]:
            log(f"    reply dropped t={at}: {command}")
        for kind, detail in result["violations"]:
            log(f"  [{kind}] {detail}")
        log(f"  logs kept in {result['log_dir']}")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=1, help="run seeds FIRST..FIRST+N-1 (default 1)")
    p.add_argument("--first", type=int, default=1, help="first seed of --seeds (default 1)")
    p.add_argument("--seed", type=int, action="append", help="replay this seed (repeatable); overrides --seeds")
    p.add_argument("--store", choices=("file", "s3"), default="file")
    p.add_argument("--jobs", type=int, default=8, help="jobs and batches per seed (default 8)")
    p.add_argument("--max-inputs", type=int, default=240, help="most inputs of one job (default 240)")
    p.add_argument("--pool", type=int, default=256, help="distinct texts (default 256)")
    p.add_argument("--duration", type=float, default=30, help="seconds the workload and faults run (default 30)")
    p.add_argument("--fault-gap", type=float, default=5, help="mean seconds between faults (default 5)")
    p.add_argument("--drain", type=float, default=180, help="seconds to wait for every job to end after (default 180)")
    p.add_argument("--close-enough", action="store_true",
                   help="vectors need only a cosine >= 0.9999 to their reference, not equal bytes")
    p.add_argument("--json", help="write the results to this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    opts = parse(argv)
    seeds = opts.seed or list(range(opts.first, opts.first + opts.seeds))
    s3 = None
    if opts.store == "s3":
        from tests.fixtures.s3_server import S3Server
        s3 = S3Server.start()
    started = time.monotonic()
    results = []
    try:
        for seed in seeds:
            results.append(run_seed(seed, opts, s3))
    finally:
        if s3 is not None:
            s3.stop()
    by_kind = Counter(kind for r in results for kind, _ in r["violations"])
    log(f"SUMMARY: {len(results)} seeds ({opts.store} store) in {time.monotonic() - started:.0f}s; "
        f"clean {sum(not r['violations'] for r in results)}; violations by kind {dict(by_kind) or 'none'}")
    for r in results:
        log(f"  seed {r['seed']}: {'clean' if not r['violations'] else Counter(k for k, _ in r['violations'])} ({r['wall_s']}s)")
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=1, default=str))
    return 1 if by_kind else 0


if __name__ == "__main__":
    sys.exit(main())
