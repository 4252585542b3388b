"""HTTP side of scripts/compose_check: talks to the stack through its published port only.

Standard library only (the seed guide's Python example, which needs `requests`, is run by the
caller with a Python that has it). Subcommands print one line of what they saw; exit 1 on failure.

  wait-ready URL MODEL N TIMEOUT     until /ready counts N live workers of MODEL
  seed-curl URL KEY MODEL GUIDE      the guide's curl block, placeholders filled, run by bash
  seed-python URL KEY GUIDE PYTHON   the guide's Python block, run by PYTHON
  submit URL KEY MODEL N             POST /v1/jobs with N inputs; prints the job id
  progress URL KEY JOB               prints `status completed total`
  wait-job URL KEY JOB N TIMEOUT     until the job is completed; its result must hold N vectors, no error
  wait-progress URL KEY JOB MIN TIMEOUT   until at least MIN inputs of the job are done (job not finished)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def call(url: str, key: str | None = None, body: dict | None = None, accept: str | None = None,
         timeout: float = 30) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if accept:
        headers["Accept"] = accept
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def fail(message: str) -> None:
    print(message)
    sys.exit(1)


def code_block(guide: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", open(guide).read(), re.S)
    if not match:
        fail(f"no {language} block in {guide}")
    return match.group(1)


def wait_ready(url: str, model: str, count: str, timeout: str) -> None:
    deadline = time.monotonic() + float(timeout)
    seen: object = None
    while time.monotonic() < deadline:
        try:
            status, body = call(f"{url}/ready", timeout=3)
            seen = (status, json.loads(body).get("models"))
            if status == 200 and json.loads(body)["models"].get(model, 0) >= int(count):
                print(f"/ready: {json.loads(body)['models']}")
                return
        except (OSError, ValueError) as exc:
            seen = repr(exc)
        time.sleep(1)
    fail(f"not ready after {timeout} s: last seen {seen}")


def seed_curl(url: str, key: str, model: str, guide: str) -> None:
    host = url.removeprefix("http://")
    command = code_block(guide, "shell").replace("${ServerIP}:8000", host)
    command = command.replace("${ApiKey}", key).replace("${ModelName}", model)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        fail(f"curl exited {result.returncode}: {result.stderr.strip()}")
    try:
        body = json.loads(result.stdout)
        vectors = [item["embedding"] for item in body["data"]]
    except (ValueError, KeyError, TypeError):
        fail(f"not an embeddings list: {result.stdout[:300]}")
    if len(vectors) != 3 or body["usage"]["total_tokens"] <= 0:
        fail(f"unexpected answer: {result.stdout[:300]}")
    print(f"3 vectors of {len(vectors[0])} dimensions from model {body['model']}, {body['usage']['total_tokens']} tokens")


def seed_python(url: str, key: str, guide: str, python: str) -> None:
    script = code_block(guide, "python").replace("${ServerUrl}", url).replace("${ApiKey}", key)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(script)
    result = subprocess.run([python, handle.name], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        fail(f"the example exited {result.returncode}: {result.stderr.strip()[-500:]}")
    lines = result.stdout.strip().splitlines()
    if [line.split(":")[0] for line in lines] != ["similarity(0,1)", "similarity(0,2)", "similarity(1,2)"]:
        fail(f"unexpected output: {result.stdout!r}")
    values = [float(line.split(":")[1]) for line in lines]
    if not all(-1.0001 <= v <= 1.0001 for v in values) or not values[0] > values[1]:
        fail(f"implausible similarities (the two capitals should be closest): {lines}")
    print("; ".join(lines))


def texts(n: int) -> list[str]:
    return [f"compose check sentence number {i}: the quick brown fox jumps over the lazy dog {i % 97}" for i in range(n)]


def submit(url: str, key: str, model: str, n: str) -> None:
    status, body = call(f"{url}/v1/jobs", key, {"model": model, "input": texts(int(n))}, timeout=120)
    if status != 202:
        fail(f"submit answered {status}: {body[:300]!r}")
    print(json.loads(body)["id"])


def job(url: str, key: str, job_id: str) -> dict:
    status, body = call(f"{url}/v1/jobs/{job_id}", key, timeout=10)
    if status != 200:
        raise OSError(f"GET job answered {status}: {body[:200]!r}")
    return json.loads(body)


def progress(url: str, key: str, job_id: str) -> None:
    record = job(url, key, job_id)
    counts = record["request_counts"]
    print(record["status"], counts["completed"], counts["total"])


def wait_progress(url: str, key: str, job_id: str, minimum: str, timeout: str) -> None:
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        record = job(url, key, job_id)
        done = record["request_counts"]["completed"]
        if record["status"] not in ("queued", "in_progress"):
            fail(f"the job ended ({record['status']}) before the check could act; make it bigger")
        if done >= int(minimum):
            print(f"{done}/{record['request_counts']['total']} done")
            return
        time.sleep(0.2)
    fail(f"fewer than {minimum} inputs done after {timeout} s")


def wait_job(url: str, key: str, job_id: str, n: str, timeout: str) -> None:
    started = time.monotonic()
    deadline = started + float(timeout)
    record: dict = {}
    last_error = ""
    while time.monotonic() < deadline:
        try:
            record = job(url, key, job_id)
            last_error = ""
        except OSError as exc:  # the API answers 503 while Redis restarts
            last_error = str(exc)
            time.sleep(1)
            continue
        if record["status"] not in ("queued", "in_progress"):
            break
        time.sleep(1)
    else:
        fail(f"not finished after {timeout} s: {record.get('status')} {record.get('request_counts')} {last_error}")
    counts = record["request_counts"]
    if record["status"] != "completed" or counts["failed"] or counts["completed"] != int(n):
        fail(f"job ended {record['status']} with {counts}; errors: {record.get('errors')}")
    status, body = call(f"{url}/v1/jobs/{job_id}/result", key, accept="application/x-ndjson", timeout=120)
    if status != 200:
        fail(f"result answered {status}")
    rows = [json.loads(line) for line in body.splitlines() if line.strip()]
    indexes = sorted(row["index"] for row in rows)
    bad = [row for row in rows if "embedding" not in row or not row["embedding"]]
    if indexes != list(range(int(n))) or bad:
        fail(f"result: {len(rows)} rows, indexes 0..{int(n) - 1}: {indexes == list(range(int(n)))}, errors: {bad[:3]}")
    waited = time.monotonic() - started
    print(f"{n}/{n} inputs completed, 0 failed, {len(rows)} vectors in the result (waited {waited:.0f} s)")


COMMANDS = {
    "wait-ready": wait_ready,
    "seed-curl": seed_curl,
    "seed-python": seed_python,
    "submit": submit,
    "progress": progress,
    "wait-job": wait_job,
    "wait-progress": wait_progress,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
