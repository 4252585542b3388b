"""`./scripts/run` and scripts/lib.sh as a new user meets them: the first run and Ctrl-C say nothing alarming.

The scripts run from a copy of the checkout's scripts in a temporary root, so their .venv and
.run directories are the test's own and the developer's .venv is never reinstalled. The copy's
.venv/bin/python hands over to the Python running the tests (the project is installed there).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.stack import ROOT, RedisServer, free_port, wait_until


def make_root(tmp_path: Path, python_body: str | None = None) -> Path:
    """A root holding copies of scripts/, pyproject.toml and constraints/, and a .venv whose
    python runs `python_body` (a shell script body) or, by default, the tests' own Python."""
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "scripts", root / "scripts", ignore=shutil.ignore_patterns("*.py", "benchkit"))
    shutil.copytree(ROOT / "constraints", root / "constraints")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n" + (python_body or f'exec "{sys.executable}" "$@"\n'))
    python.chmod(0o755)
    return root


def bash(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_the_first_install_reads_no_missing_stamp(tmp_path):
    """No .venv/.embedserve-installed yet: ensure_venv installs quietly (no 'No such file or directory')."""
    # pip stands in: the venv's python records what it is asked and succeeds, so the test downloads nothing.
    root = make_root(tmp_path, python_body='echo "$*" >> "$(dirname "$0")/../calls"\n')
    result = bash(f'source "{root}/scripts/lib.sh" && ensure_venv api')
    assert result.returncode == 0, result.stderr
    assert "No such file" not in result.stderr and "lib.sh: line" not in result.stderr, result.stderr
    assert result.stderr.startswith("Installing embedserve[api] into"), result.stderr
    assert "-e " in (root / ".venv" / "calls").read_text()
    stamp = (root / ".venv" / ".embedserve-installed").read_text().split()
    assert stamp[1] == "api"

    # Installed: the next run reads the stamp, installs nothing and prints nothing.
    again = bash(f'source "{root}/scripts/lib.sh" && ensure_venv api')
    assert again.returncode == 0 and again.stderr == "", again.stderr


@pytest.fixture
def stack_root(tmp_path):
    """A root whose .venv counts as installed with every extra, so scripts/run starts at once."""
    root = make_root(tmp_path)
    installed = bash(f'source "{root}/scripts/lib.sh"; '
                     'cat "$ROOT/pyproject.toml" "$ROOT/constraints/cpu.txt" | sha256sum | cut -c1-16')
    (root / ".venv" / ".embedserve-installed").write_text(f"{installed.stdout.strip()} api,test,worker\n")
    return root


def ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# "starting": Ctrl-C while the model loads; "up": while the script supervises the running stack.
# sigint_ignored: the script was started with SIGINT ignored (as a non-interactive shell starts a
# background command), so the parts, which set their own handlers, stop before the script learns of
# it; the same order a Ctrl-C racing the script's own loop produces.
@pytest.mark.slow
@pytest.mark.parametrize("moment,sigint_ignored", [("starting", False), ("starting", True), ("up", True)])
def test_ctrl_c_prints_only_the_clean_stop(stack_root, tmp_path, moment, sigint_ignored):
    """Ctrl-C reaches the whole foreground process group (the script, the API, the worker): all stop,
    and the API or the worker stopping on it is not reported as a failure."""
    server = RedisServer.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBED_")}
    env.update(EMBED_REDIS_URL=server.url, EMBED_PORT=str(port), EMBED_HOST="127.0.0.1", EMBED_API_WORKERS="1",
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    stderr_path = tmp_path / "run.stderr"
    with stderr_path.open("w") as stderr:
        # Its own session, as a terminal's job: the group's id is the script's pid.
        run = subprocess.Popen([str(stack_root / "scripts" / "run")], cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=stderr, text=True,
                               preexec_fn=ignore_sigint if sigint_ignored else None)
    try:
        def api_answers():
            assert run.poll() is None, stderr_path.read_text()
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(api_answers, 120, "the API started by scripts/run")
        if moment == "up":
            wait_until(lambda: "embedserve is up." in (run.stdout.readline() or "") or run.poll() is not None,
                       300, "scripts/run to say the stack is up")
            assert run.poll() is None, stderr_path.read_text()
        os.killpg(run.pid, signal.SIGINT)
        run.wait(120)  # under a loaded CI box a worker still importing torch takes a while to stop
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(10)
        run.stdout.close()
        server.stop()
    messages = stderr_path.read_text()
    assert messages.rstrip().endswith("stopped."), messages[-3000:]
    assert "error:" not in messages and "exited" not in messages, messages[-3000:]
    assert run.returncode == 130
    with pytest.raises(ProcessLookupError):  # nothing of the group is left running
        os.killpg(run.pid, 0)
