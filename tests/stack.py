"""Start real parts of the stack as subprocesses for tests: redis-server (alone, or a primary, a replica
and sentinels), workers, API servers."""

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
    def start(cls, *extra_args: str, private: bool = False) -> RedisServer:
        """A redis-server on a free port (`private`, or with `extra_args`: never EMBED_TEST_REDIS_URL's)."""
        external = os.environ.get("EMBED_TEST_REDIS_URL")
        if external and not extra_args and not private:
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

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])


@dataclass
class SentinelGroup:
    """A primary, its replicas and sentinels watching them, all on 127.0.0.1: a Redis that fails over.

    Stands in for a RedisServer in a Stack: `url` is the sentinel:// URL the stack's processes get,
    `client()` a client of whichever server is the master now. `stop` stops everything it started.
    """

    primary: RedisServer
    replicas: list[RedisServer]
    sentinels: list[Process]
    sentinel_ports: list[int]
    master_name: str
    work_dir: Path

    # Sentinel timing: a master that does not answer for DOWN_AFTER_MS is down (once a quorum agrees);
    # a failover that has not finished in FAILOVER_TIMEOUT_MS is tried again.
    DOWN_AFTER_MS = 1000
    FAILOVER_TIMEOUT_MS = 5000

    @classmethod
    def start(cls, replicas: int = 1, sentinels: int = 3, quorum: int = 2,
              master_name: str = "mymaster") -> SentinelGroup:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("tests need redis-server on PATH (apt-get install redis-server)")
        work_dir = Path(tempfile.mkdtemp(prefix="embed-sentinel-"))
        group = cls(primary=RedisServer.start(private=True), replicas=[], sentinels=[], sentinel_ports=[],
                    master_name=master_name, work_dir=work_dir)
        try:
            for _ in range(replicas):
                group.replicas.append(RedisServer.start("--replicaof", "127.0.0.1", str(group.primary.port)))
            primary = group.primary.client()
            wait_until(lambda: primary.info("replication").get("connected_slaves", 0) >= replicas and all(
                r.client().info("replication").get("master_link_status") == "up" for r in group.replicas),
                20, "the replicas to sync")
            for number in range(sentinels):
                port = free_port()
                config = work_dir / f"sentinel-{number}.conf"  # a sentinel rewrites its own config file
                config.write_text("\n".join([
                    f"port {port}", "bind 127.0.0.1", f"dir {work_dir}",
                    f"sentinel monitor {master_name} 127.0.0.1 {group.primary.port} {quorum}",
                    f"sentinel down-after-milliseconds {master_name} {cls.DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {master_name} {cls.FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {master_name} 1", ""]))
                log_path = work_dir / f"sentinel-{number}.log"
                with log_path.open("w") as log:
                    popen = subprocess.Popen([binary, str(config), "--sentinel"], stdout=log, stderr=subprocess.STDOUT)
                group.sentinels.append(Process(f"sentinel-{number}", popen, log_path))
                group.sentinel_ports.append(port)
            # Every sentinel knows the master, its replicas and the other sentinels (found over hello messages).
            wait_until(group._sentinels_agree, 30, "the sentinels to discover each other and the replicas")
        except BaseException:
            group.stop()
            raise
        return group

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"sentinel://{hosts}/{self.master_name}/0"

    def sentinel(self, number: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_ports[number], socket_timeout=2)

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers sees it."""
        for number in range(len(self.sentinels)):
            try:
                host, port = self.sentinel(number).sentinel_get_master_addr_by_name(self.master_name)
                return int(port)
            except (redis.RedisError, TypeError):
                continue
        return None

    def client(self) -> redis.Redis:
        """A client of the current master: a plain one to the port a sentinel names now."""
        return redis.Redis(host="127.0.0.1", port=self.master_port())

    def _sentinels_agree(self) -> bool:
        try:
            for number in range(len(self.sentinels)):
                state = self.sentinel(number).sentinel_master(self.master_name)
                if int(state["num-slaves"]) < len(self.replicas) or \
                        int(state["num-other-sentinels"]) < len(self.sentinels) - 1:
                    return False
            return True
        except redis.RedisError:
            return False

    def wait_failover(self, old_port: int, timeout: float) -> int:
        """Wait until every sentinel names a new master (other than `old_port`) that answers as one; its port."""
        def promoted():
            ports = set()
            for number in range(len(self.sentinels)):
                try:
                    _, port = self.sentinel(number).sentinel_get_master_addr_by_name(self.master_name)
                except redis.RedisError:
                    return None
                ports.add(int(port))
            if len(ports) != 1 or old_port in ports:
                return None
            port = ports.pop()
            try:
                role = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).role()[0]
            except redis.RedisError:
                return None
            return port if role in (b"master", "master") else None

        return wait_until(promoted, timeout, "the sentinels to promote a replica", interval=0.1)

    def stop(self) -> None:
        for process in self.sentinels:
            process.stop()
        for server in [*self.replicas, self.primary]:
            server.stop()


@dataclass
class Stack:
    """Workers and API servers started against one Redis; everything is stopped by `close`."""

    redis: RedisServer  # or a SentinelGroup: anything with `url` and `client()`
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
