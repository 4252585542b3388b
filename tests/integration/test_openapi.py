"""/openapi.json and /docs, and schemathesis against the live API: no 5xx, every response conforms."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.integration.helpers import API_KEY

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

# Every check, the request-side ones included: what the document rejects the API must reject
# (negative_data_rejection), what it accepts the API must accept. The built-in
# positive_data_acceptance runs inside the hooks' wrapper, which lets through by error code only
# the refusals the document cannot foresee (the model's context length, size and vocabulary).
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
CHECKS = ["--checks", "all", "--exclude-checks", "positive_data_acceptance"]


def test_openapi_document_is_served(api_url):
    """Served as JSON; that it matches the app's routes is tests/unit/test_openapi_routes.py."""
    response = requests.get(api_url + "/openapi.json", timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    spec = response.json()
    assert spec["openapi"].startswith("3.1")
    assert "post" in spec["paths"]["/v1/embeddings"]


def test_docs_page_is_served_without_external_assets(api_url):
    page = requests.get(api_url + "/docs/", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "/openapi.json" in page.text
    assert "https://" not in page.text.replace("https://github.com", "")  # no CDN
    asset = requests.get(api_url + "/docs/swagger-ui-bundle.js", timeout=30)
    assert asset.status_code == 200 and len(asset.content) > 100_000


def test_schemathesis_with_every_check_finds_the_api_and_its_document_agree(api_url, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", api_url + "/openapi.json",
         "--header", f"Authorization: Bearer {API_KEY}", *CHECKS,
         "--max-examples", "8", "--seed", "1", "--workers", "1", "--request-timeout", "60",
         "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all",
         "--report-dir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,  # its cache dir goes there
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    # Every operation it selected was exercised (on the last run: all 26 operations).
    selected = re.search(r"Selected: (\d+)/(\d+)", done.stdout)
    assert selected and selected.group(1) == selected.group(2) and int(selected.group(1)) >= 8, done.stdout
    assert f"Tested: {selected.group(1)}" in done.stdout, done.stdout
