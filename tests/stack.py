"""Start real parts of the stack as subprocesses for tests: redis-server, workers, API servers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (Linux); the benchmarks use it too."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns a truthy value; fail the test with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Process:
    """A child process with its log file; `stop` is idempotent."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def kill_tree(self) -> None:
        """SIGKILL the process's children first (an API's gunicorn workers), then the process itself."""
        for child in children(self.popen.pid):
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass  # gone already
        self.kill()

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class RedisServer:
    """A private redis-server (or an external one named by EMBED_TEST_REDIS_URL)."""

    url: str
    process: Process | None = None
    data_dir: Path | None = None
    args: list[str] = field(default_factory=list)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    @classmethod
    def start(cls, *extra_args: str) -> "RedisServer":
        external = os.environ.get("EMBED_TEST_REDIS_URL")
        if external and not extra_args:
            return cls(url=external)
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("tests need redis-server on PATH (apt-get install redis-server) "
                               "or EMBED_TEST_REDIS_URL pointing at a Redis they may use")
        port = free_port()
        data_dir = Path(tempfile.mkdtemp(prefix="embed-redis-"))
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
                "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction", *extra_args]
        server = cls(url=f"redis://127.0.0.1:{port}/0", data_dir=data_dir, args=args)
        server._launch()
        return server

    def _launch(self) -> None:
        log_path = self.data_dir / "redis.log"
        with log_path.open("a") as log:  # the child keeps its own copy of the descriptor
            popen = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        self.process = Process("redis", popen, log_path)
        wait_until(self._answers, 10, "redis-server to start")

    def restart(self) -> None:
        """Stop (SIGTERM: Redis flushes its append-only file) and start again on the same port and dir."""
        self.stop()
        self._launch()

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class Stack:
    """Workers and API servers started against one Redis; everything is stopped by `close`."""

    redis: RedisServer
    log_dir: Path
    base_env: dict = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    def env(self, **overrides: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMBED_")}
        env.update({"EMBED_REDIS_URL": self.redis.url, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                    "TOKENIZERS_PARALLELISM": "false", "EMBED_LOG_LEVEL": "INFO",
                    # Every process of one stack shares one job store, private to the stack.
                    "EMBED_JOB_STORE": (self.log_dir / "store").resolve().as_uri()})
        env.update(self.base_env)
        env.update(overrides)
        return env

    def spawn(self, name: str, module: str, **env: str) -> Process:
        log_path = self.log_dir / f"{name}-{len(self.processes)}.log"
        with log_path.open("w") as log:
            popen = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=self.env(**env),
                                     stdout=log, stderr=subprocess.STDOUT)
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def start_worker(self, model_name: str, timeout: float = 180, **env: str) -> Process:
        """Start a worker and wait until it heartbeats for `model_name`."""
        process = self.spawn(f"worker-{model_name}", "worker", **env)
        client = self.redis.client()

        def announced():
            if not process.alive():
                raise AssertionError(f"worker {model_name} exited:\n{process.log()[-4000:]}")
            return client.zcount(f"embed:workers:{model_name}", time.time() - 5, "+inf") > 0 and \
                "ready." in process.log()

        wait_until(announced, timeout, f"worker {model_name} to start", interval=0.2)
        return process

    def start_api(self, timeout: float = 60, **env: str) -> tuple[Process, str]:
        """Start an API server on a free port; returns it and its base URL."""
        port = free_port()
        process = self.spawn("api", "api", EMBED_PORT=str(port), EMBED_HOST="127.0.0.1",
                             EMBED_API_WORKERS="1", **env)
        url = f"http://127.0.0.1:{port}"

        def healthy():
            if not process.alive():
                raise AssertionError(f"API exited:\n{process.log()[-4000:]}")
            try:
                return requests.get(url + "/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout, "the API to answer /health")
        return process, url

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@contextmanager
def private_stack(log_dir: Path, **base_env: str) -> Iterator[Stack]:
    """A Stack on a redis-server of its own (for tests that kill or reconfigure things); all stopped after."""
    redis = RedisServer.start()
    stack = Stack(redis=redis, log_dir=log_dir, base_env=dict(base_env))
    try:
        yield stack
    finally:
        stack.close()
        redis.stop()
