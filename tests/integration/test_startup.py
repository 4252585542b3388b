"""Both processes refuse to start on settings or a Redis that would lose queued work; a worker stopped
while it loads its model says so in one line."""

from __future__ import annotations

import os
import signal

import pytest

from tests.integration.helpers import create_key, models
from tests.stack import RedisServer, Stack, wait_until

pytestmark = pytest.mark.slow  # each test starts an API or a worker on a Redis of its own (tests/stack.py)

KEYS = {"EMBED_API_KEYS": "startup-test-key-1"}


@pytest.fixture
def private_stack(tmp_path):
    """Makes Stacks, each on its own redis-server started with the given extra arguments."""
    made = []

    def make(*redis_args: str) -> Stack:
        server = RedisServer.start(*redis_args)
        stack = Stack(redis=server, log_dir=tmp_path)
        made.append((server, stack))
        return stack

    yield make
    for server, stack in made:
        stack.close()
        server.stop()


def _exit_code(process, timeout: float = 60) -> int:
    wait_until(lambda: not process.alive(), timeout, f"{process.name} to exit")
    return process.popen.returncode


@pytest.mark.parametrize("module", ["api", "worker"])
def test_refuses_an_evicting_redis(private_stack, module):
    stack = private_stack("--maxmemory-policy", "allkeys-lru")
    process = stack.spawn(module, module, **KEYS)
    assert _exit_code(process) != 0
    log = process.log()
    assert "maxmemory-policy is 'allkeys-lru'" in log and "noeviction" in log


@pytest.mark.parametrize("module", ["api", "worker"])
def test_refuses_a_visibility_timeout_not_above_the_task_limit(private_stack, module):
    stack = private_stack()
    process = stack.spawn(module, module, EMBED_VISIBILITY_TIMEOUT="60", EMBED_TASK_TIME_LIMIT="60", **KEYS)
    assert _exit_code(process) != 0
    assert "EMBED_VISIBILITY_TIMEOUT (60s) must be above EMBED_TASK_TIME_LIMIT (60s)" in process.log()


def test_starts_with_a_warning_when_config_get_is_disabled(private_stack):
    stack = private_stack("--rename-command", "CONFIG", "")
    process, _ = stack.start_api(**KEYS)
    assert process.alive()
    assert "cannot read Redis maxmemory-policy" in process.log()


def test_serves_managed_keys_with_no_static_keys(private_stack):
    stack = private_stack()
    key = create_key(stack, "only-managed")
    process, url = stack.start_api()  # no EMBED_API_KEYS at all
    assert models(url, key) == 200
    assert models(url, "startup-test-key-1") == 401


def test_ctrl_c_while_the_model_loads_exits_with_a_line_not_a_traceback(private_stack):
    """Ctrl-C in a terminal while a worker loads its model (minutes for a large one): one line, exit status
    130, as the CLI does; no traceback out of the wait for the model thread."""
    stack = private_stack()
    process = stack.spawn("worker", "worker")
    # A second thread appears only once the model's load has begun (torch's and the model thread's);
    # before that the process is a single thread importing and checking its settings.
    wait_until(lambda: not process.alive() or len(os.listdir(f"/proc/{process.popen.pid}/task")) > 1, 60,
               "the worker to start loading its model")
    process.popen.send_signal(signal.SIGINT)
    assert _exit_code(process) == 130
    log = process.log()
    assert "interrupted before serving" in log and "Traceback" not in log
