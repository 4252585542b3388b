"""The bulk-job examples of docs/jobs.md (once the README's) work as written (base URL and key filled in)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.integration.helpers import API_KEY
from tests.integration.jobs_helpers import wait_finished
from tests.stack import ROOT

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)


def bulk_section() -> str:
    """The jobs page: its first bash block is the curl submission, its first python block the batch example."""
    return (ROOT / "docs" / "jobs.md").read_text()


def test_python_batch_example(api_url, tmp_path):
    script = re.search(r"```python\n(.*?)```", bulk_section(), re.S).group(1)
    script = script.replace('"http://127.0.0.1:8000/v1"', repr(api_url + "/v1")).replace("api_key=KEY",
                                                                                      f"api_key={API_KEY!r}")
    path = tmp_path / "batch_example.py"
    path.write_text(script)
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted(["doc-0", "384", "doc-1", "384"])


def test_curl_job_example(api_url, http):
    block = re.search(r"```bash\n(.*?)```", bulk_section(), re.S).group(1)
    submit = block.split("\n# {")[0].split("\n", 1)[1]  # the first command, after its comment line
    submit = submit.replace("http://127.0.0.1:8000", api_url).replace("$KEY", API_KEY)
    result = subprocess.run(["bash", "-c", submit], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["object"] == "embedding.job"
    assert wait_finished(http, job["id"])["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
