"""`embedserve embed`, the real console command in a subprocess, against the real stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.integration.helpers import API_KEY, MINILM, embed
from tests.integration.jobs_helpers import get_job, result_json, wait_finished

pytestmark = pytest.mark.slow  # needs the session stack: an API and two workers (tests/integration/conftest.py)

REPO = Path(__file__).resolve().parents[2]


def command(api_url: str, *args: str, key: str | None = API_KEY) -> list[str]:
    return [sys.executable, "-m", "embedserve.cli", "embed", *args, "--url", api_url] + \
        (["--api-key", key] if key is not None else [])


def run_cli(api_url: str, *args: str, key: str | None = API_KEY, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("EMBED_URL", "EMBED_API_KEY")}
    return subprocess.run(command(api_url, *args, key=key), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def submitted_id(stderr: str) -> str:
    line = next(line for line in stderr.splitlines() if line.startswith("embedserve embed: submitted job_"))
    return line.split()[3].rstrip(":")


def sync_vectors(http, texts: list[str], **extra) -> np.ndarray:
    rows = []
    for start in range(0, len(texts), 500):
        response = embed(http, model=MINILM, input=texts[start:start + 500], **extra)
        assert response.status_code == 200, response.text[:300]
        rows += [item["embedding"] for item in sorted(response.json()["data"], key=lambda d: d["index"])]
    return np.array(rows, dtype=np.float32)


def assert_same_vectors(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    cosine = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() >= 0.9999


TEXTS = [f"Line {i}: {['a quiet harbour', 'the tax form', 'a red bicycle', 'bread rising'][i % 4]} number {i * 7919 % 1000}"
         for i in range(1000)]


@pytest.fixture(scope="module")
def txt_run(api_url, tmp_path_factory):
    """The 1,000-line text file embedded once to .npy; a blank line in it is skipped."""
    folder = tmp_path_factory.mktemp("embed-cli")
    source = folder / "texts.txt"
    source.write_text("\n".join(TEXTS[:500] + [""] + TEXTS[500:]) + "\n", encoding="utf-8")
    out = folder / "out.npy"
    done = run_cli(api_url, str(source), "-o", str(out), "--model", MINILM)
    return done, out, folder


def test_txt_to_npy_matches_sync_embeddings(txt_run, http):
    done, out, _ = txt_run
    assert done.returncode == 0, done.stderr
    assert "1 blank lines skipped" in done.stderr
    assert "1000/1000" in done.stderr  # the progress line reached the end
    assert_same_vectors(np.load(out), sync_vectors(http, TEXTS))


def test_reattach_to_a_finished_job(txt_run, api_url):
    done, out, folder = txt_run
    job_id = submitted_id(done.stderr)
    again = run_cli(api_url, "-o", str(folder / "again.jsonl"), "--job", job_id)
    assert again.returncode == 0, again.stderr
    lines = [json.loads(line) for line in (folder / "again.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(1000))
    assert_same_vectors(np.array([line["embedding"] for line in lines], dtype=np.float32), np.load(out))

    parquet = run_cli(api_url, "-o", str(folder / "again.parquet"), "--job", job_id)
    assert parquet.returncode == 0, parquet.stderr
    table = pq.read_table(folder / "again.parquet").to_pydict()
    assert table["index"] == list(range(1000)) and set(table["error"]) == {None}
    assert_same_vectors(np.array(table["embedding"], dtype=np.float32), np.load(out))


def test_jsonl_in_jsonl_out(api_url, http, tmp_path):
    texts = TEXTS[:40]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t, "id": f"doc-{i}"}) + "\n" if i % 2 else json.dumps(t) + "\n"
                              for i, t in enumerate(texts)))
    done = run_cli(api_url, str(source), "-o", str(tmp_path / "out.jsonl"), "--model", MINILM)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(40))
    assert [line.get("id") for line in lines] == [f"doc-{i}" if i % 2 else None for i in range(40)]
    assert_same_vectors(np.array([line["embedding"] for line in lines], dtype=np.float32), sync_vectors(http, texts))


def test_jsonl_with_ids_and_a_bad_line_to_npy(api_url, http, tmp_path):
    """Uploaded as a file: the bad line fails alone (a NaN row, reported, exit 3), the rest equal the API's."""
    texts = TEXTS[:60]
    lines = [json.dumps({"text": t, "id": f"doc-{i}"}) for i, t in enumerate(texts)]
    lines.insert(7, '{"title": "no text"}')
    source = tmp_path / "ids-and-a-bad-line.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.npy"
    done = run_cli(api_url, str(source), "-o", str(out), "--model", MINILM)
    assert done.returncode == 3, done.stderr
    job_id = submitted_id(done.stderr)
    assert f"submitted {job_id}: 61 texts" in done.stderr
    assert f"job {job_id} ended completed; 1 of 61 inputs failed (written as NaN rows) to {out}" in done.stderr
    matrix = np.load(out)
    assert matrix.shape == (61, 384) and matrix.dtype == np.float32
    listed = http.get(f"{api_url}/v1/jobs/{job_id}/result", timeout=60).json()["data"]
    assert [d.get("id") for d in listed] == [f"doc-{i}" for i in range(7)] + [None] + \
        [f"doc-{i}" for i in range(7, 60)]
    assert listed[7]["embedding"] is None and listed[7]["error"]["code"] == "invalid_input"
    assert np.isnan(matrix[7]).all()
    good = [i for i in range(61) if i != 7]
    np.testing.assert_array_equal(matrix[good], np.asarray([listed[i]["embedding"] for i in good], dtype=np.float32))
    assert_same_vectors(matrix[good], sync_vectors(http, texts))
    files = http.get(f"{api_url}/v1/files", params={"limit": 100}, timeout=30).json()["data"]
    assert not [f for f in files if f["filename"] == "ids-and-a-bad-line.jsonl"]  # the upload is deleted once submitted


def test_csv_text_column_with_dimensions(api_url, http, tmp_path):
    texts = TEXTS[:30] + ['with "quotes", a comma\nand a newline']
    source = tmp_path / "in.csv"
    rows = ["id,text"] + [f'{i},"{t.replace(chr(34), chr(34) * 2)}"' for i, t in enumerate(texts)]
    source.write_text("\n".join(rows) + "\n")
    done = run_cli(api_url, str(source), "-o", str(tmp_path / "out.npy"), "--model", MINILM, "--dimensions", "64")
    assert done.returncode == 0, done.stderr
    assert_same_vectors(np.load(tmp_path / "out.npy"), sync_vectors(http, texts, dimensions=64))


def test_ubinary_with_dimensions_is_the_jobs_bits_in_every_output(api_url, http, tmp_path):
    """--embedding-type ubinary --dimensions 256: (n, 32) uint8 in .npy and .parquet, bit for bit the job's
    JSON result; re-attaching writes the job's type whatever --embedding-type says then. The one long text,
    cut from the left (--truncation-direction), is nearer its left-cut sync vector than its right-cut one."""
    head = " ".join(f"the harbour pilot logs tide {i} and the ferry times" for i in range(60))
    tail = " ".join(f"a recipe kneads dough {i} and bakes rye bread" for i in range(60))
    texts = TEXTS[:40] + [head + " " + tail]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n")
    out = tmp_path / "out.npy"
    done = run_cli(api_url, str(source), "-o", str(out), "--model", MINILM, "--embedding-type", "ubinary",
                   "--dimensions", "256", "--truncate", "--truncation-direction", "left")
    assert done.returncode == 0, done.stderr
    job_id = submitted_id(done.stderr)
    assert get_job(http, job_id)["embedding_type"] == "ubinary"
    want = np.asarray([d["embedding"] for d in result_json(http, job_id)["data"]], dtype=np.uint8)
    assert want.shape == (41, 32)
    matrix = np.load(out)
    assert matrix.dtype == np.uint8 and matrix.shape == (41, 32)
    np.testing.assert_array_equal(matrix, want)

    again = run_cli(api_url, "-o", str(tmp_path / "again.parquet"), "--job", job_id, "--embedding-type", "float")
    assert again.returncode == 0, again.stderr
    assert f"note: job {job_id} holds ubinary vectors; --embedding-type float is ignored" in again.stderr
    table = pq.read_table(tmp_path / "again.parquet")
    vector = table.schema.field("embedding").type
    assert str(vector.value_type) == "uint8" and vector.list_size == 32
    assert table.schema.metadata[b"embedserve.embedding_type"] == b"ubinary"
    np.testing.assert_array_equal(np.asarray(table.column("embedding").to_pylist(), dtype=np.uint8), want)

    lines = run_cli(api_url, "-o", str(tmp_path / "again.jsonl"), "--job", job_id)
    assert lines.returncode == 0, lines.stderr
    rows = [json.loads(line) for line in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert [row["index"] for row in rows] == list(range(41))
    np.testing.assert_array_equal(np.asarray([row["embedding"] for row in rows], dtype=np.uint8), want)

    def cut(direction: str) -> np.ndarray:
        response = embed(http, model=MINILM, input=[texts[-1]], dimensions=256, embedding_type="ubinary",
                         truncate=True, truncation_direction=direction)
        assert response.status_code == 200, response.text[:300]
        return np.asarray(response.json()["data"][0]["embedding"], dtype=np.uint8)

    def differing_bits(a: np.ndarray, b: np.ndarray) -> int:
        return int(np.unpackbits(a ^ b).sum())

    assert differing_bits(matrix[-1], cut("left")) < differing_bits(matrix[-1], cut("right"))


@pytest.mark.parametrize("name, content, output, message", [
    ("missing.txt", None, "out.npy", "missing.txt: no such file"),
    ("empty.txt", "\n\n", "out.npy", "empty.txt: no texts in it"),
    ("texts.xlsx", "a\n", "out.npy", "INPUT must end in .txt, .jsonl, .csv"),
    ("texts.txt", "a\n", "out.csv", "OUTPUT must end in .npy, .jsonl, .parquet"),
])
def test_bad_files_fail_with_one_clear_line(api_url, tmp_path, name, content, output, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    done = run_cli(api_url, str(tmp_path / name), "-o", str(tmp_path / output), "--model", MINILM)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embedserve embed: error: ") and message in lines[0], done.stderr
    assert not (tmp_path / output).exists()


@pytest.mark.parametrize("args, key, message", [
    (["--model", MINILM], "not-a-valid-key", "HTTP 401 invalid_api_key: Incorrect API key provided."),
    (["--model", MINILM], None, "HTTP 401 missing_api_key: You didn't provide an API key."),
    (["--model", "no-such-model"], API_KEY, "HTTP 404 model_not_found: The model 'no-such-model' does not exist"),
])
def test_api_errors_are_one_line(api_url, tmp_path, args, key, message):
    (tmp_path / "in.txt").write_text("hello\n")
    done = run_cli(api_url, str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.npy"), *args, key=key)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embedserve embed: error: " + message), done.stderr


def test_reattach_to_an_unknown_job(api_url, tmp_path):
    done = run_cli(api_url, "-o", str(tmp_path / "out.npy"), "--job", "job_" + "0" * 32)
    assert done.returncode == 1
    assert done.stderr.strip() == f"embedserve embed: error: HTTP 404 not_found: No job with id 'job_{'0' * 32}'."


def test_ctrl_c_leaves_the_job_running_and_reattach_finishes_it(api_url, http, tmp_path):
    texts = [f"interrupted text {i} about {['rivers', 'ledgers', 'engines'][i % 3]}" for i in range(1500)]
    (tmp_path / "big.txt").write_text("\n".join(texts))
    out = tmp_path / "big.npy"
    proc = subprocess.Popen(command(api_url, str(tmp_path / "big.txt"), "-o", str(out), "--model", MINILM),
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:  # ends at EOF if the command dies early
            seen.append(line)
            if "/1500 " in line:  # the first progress line
                break
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    job_id = submitted_id(stderr)
    assert f"re-attach: embedserve embed -o {out} --job {job_id} --url {api_url}" in stderr
    assert f"curl -X POST {api_url}/v1/jobs/{job_id}/cancel" in stderr
    assert not out.exists()
    assert get_job(http, job_id)["status"] in ("queued", "in_progress", "completed")  # not cancelled

    again = run_cli(api_url, "-o", str(out), "--job", job_id)
    assert again.returncode == 0, again.stderr
    assert wait_finished(http, job_id)["status"] == "completed"
    matrix = np.load(out)
    assert matrix.shape == (1500, 384) and not np.isnan(matrix).any()
    probe = [0, 749, 1499]
    assert_same_vectors(matrix[probe], sync_vectors(http, [texts[i] for i in probe]))
