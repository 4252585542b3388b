"""The seed usage guide works as written (placeholders filled in as a user would).

The guide is read from the copy in tests/data only: a test must not depend on files outside the
repository, which a checkout elsewhere (CI, another machine) does not have or has in another version.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.helpers import API_KEY, QWEN_ALIAS

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

VENDORED_GUIDE = Path(__file__).resolve().parents[1] / "data" / "seed_usage_guide.md"


def seed_guide() -> str:
    return VENDORED_GUIDE.read_text()


def code_block(text: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", text, re.S)
    assert match, f"no {language} block in the seed guide"
    return match.group(1)


def test_curl_example(api_url):
    command = code_block(seed_guide(), "shell")
    # The guide hard-codes port 8000; the test server listens on a free port instead.
    command = command.replace("${ServerIP}:8000", api_url.removeprefix("http://"))
    command = command.replace("${ApiKey}", API_KEY).replace("${ModelName}", QWEN_ALIAS)
    result = subprocess.run(["bash", "-c", command], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert len(body["data"]) == 3 and body["usage"]["total_tokens"] > 0


def test_python_example(api_url, tmp_path):
    script = code_block(seed_guide(), "python")
    script = script.replace("${ServerUrl}", api_url).replace("${ApiKey}", API_KEY)
    path = tmp_path / "example.py"
    path.write_text(script)
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["similarity(0,1)", "similarity(0,2)", "similarity(1,2)"]
    assert all(-1.0001 <= float(line.split(":")[1]) <= 1.0001 for line in lines)
