"""Start the contenders as real processes: our stack (Redis, worker, API) and optionally Infinity."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import requests

from tests.stack import Process, RedisServer, Stack, free_port, wait_until

API_KEY = "bench-key-000001"


class OurStack:
    """A private redis-server, one `python -m worker` and one `python -m api` (1 process)."""

    def __init__(self, model_dir: str, model_name: str, **env: str):
        self.log_dir = Path(tempfile.mkdtemp(prefix="embed-bench-"))
        self.redis = RedisServer.start()
        self.stack = Stack(redis=self.redis, log_dir=self.log_dir)
        try:
            self.worker = self.stack.start_worker(model_name, timeout=600, EMBED_MODEL=model_dir,
                                                  EMBED_MODEL_NAME=model_name, **env)
            self.api, self.url = self.stack.start_api(timeout=120, EMBED_API_KEYS=API_KEY, **env)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.stack.close()
        self.redis.stop()


class Infinity:
    """`infinity_emb v2` from another virtual environment, serving the same model directory."""

    def __init__(self, python: str, model_dir: str, model_name: str, batch_size: int = 32):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkdtemp(prefix="infinity-bench-")) / "infinity.log"
        cli = Path(python).parent / "infinity_emb"  # the console script installed beside that python
        args = [str(cli), "v2", "--model-id", model_dir,
                "--served-model-name", model_name, "--port", str(self.port), "--host", "127.0.0.1",
                "--device", "cpu", "--engine", "torch", "--batch-size", str(batch_size)]
        env = {"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
               "PATH": "/usr/bin:/bin"}
        with self.log_path.open("w") as log:
            popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.process = Process("infinity", popen, self.log_path)
        try:
            wait_until(self._healthy, 600, "Infinity to answer /health", interval=0.5)
        except BaseException:
            self.close()
            raise

    def _healthy(self) -> bool:
        if not self.process.alive():
            raise RuntimeError(f"Infinity exited:\n{self.process.log()[-3000:]}")
        try:
            return requests.get(self.url + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def close(self) -> None:
        self.process.stop()


def settle(seconds: float = 2.0) -> None:
    """Let a freshly started server finish its start-up work before timing it."""
    time.sleep(seconds)
