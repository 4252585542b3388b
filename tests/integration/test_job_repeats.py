"""A job's repeated texts are embedded once across its chunks, with no embedding cache (the session stack has
none): forwards are counted from /metrics (embedserve_batch_rows_sum).

A chunk that runs before its repeats' first occurrences have finished embeds those repeats itself (see
embedserve/jobs/repeats.py: a job stopped then must hold a vector for each row it counted), so the count
of forwards depends on which chunks ran side by side; it is bounded here, not exact."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from embedserve import defaults
from tests.integration.helpers import MINILM, embed
from tests.integration.jobs_helpers import result_json, submit, sync_vectors, texts, upload, wait_finished
from tests.stack import wait_until

pytestmark = pytest.mark.slow  # the session stack

SETTLE_S = defaults.BATCH_STATS_FLUSH_S + 2.0


def forwarded(api_url: str) -> float:
    for family in text_string_to_metric_families(requests.get(api_url + "/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "embedserve_batch_rows_sum" and sample.labels.get("model") == MINILM:
                return sample.value
    return 0.0


def settled(api_url: str, at_least: float = 0.0) -> float:
    wait_until(lambda: forwarded(api_url) >= at_least, 60, f"forwarded rows to reach {at_least}")
    time.sleep(SETTLE_S)
    return forwarded(api_url)


def repeated_inputs(seed: str, distinct: int = 40, total: int = 1200) -> tuple[list[str], list[int]]:
    """`total` inputs drawn from `distinct` texts, each first in the job's first two 32-input chunks, spread
    over many more chunks (JOB_CHUNK_INPUTS each: a job this small keeps the smallest chunks)."""
    unique = texts(distinct, seed=seed)
    rng = random.Random(seed)
    which = list(range(distinct)) + [rng.randrange(distinct) for _ in range(total - distinct)]
    return [unique[i] for i in which], which


def forwards_bound(which: list[int]) -> float:
    """Half the forwards of a job whose chunks each forwarded their own distinct texts (no skip across chunks):
    this many is only reached if most later chunks did not skip repeats whose first chunk had finished."""
    size = defaults.JOB_CHUNK_INPUTS
    return sum(len(set(which[i:i + size])) for i in range(0, len(which), size)) / 2


def check_result(http, job: dict, inputs: list[str], which: list[int], distinct: int) -> np.ndarray:
    done = wait_finished(http, job["id"])
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": len(inputs), "completed": len(inputs), "failed": 0}
    listed = result_json(http, job["id"])
    assert [d["index"] for d in listed["data"]] == list(range(len(inputs)))
    got = np.asarray([d["embedding"] for d in listed["data"]], dtype=np.float32)
    for text in range(distinct):  # every repeat holds its text's vector, the same bytes each time
        rows = got[[i for i, w in enumerate(which) if w == text]]
        assert np.array_equal(rows, np.repeat(rows[:1], len(rows), axis=0))
    return got, listed["usage"]["prompt_tokens"]


def check_usage(http, inputs: list[str], tokens: int) -> None:
    """Usage counts every input's tokens, repeats included: as the same inputs sent in one sync request."""
    assert tokens == embed(http, model=MINILM, input=inputs).json()["usage"]["prompt_tokens"]


def test_a_job_forwards_each_distinct_text_once(http, api_url):
    inputs, which = repeated_inputs("repeat-list")
    before = settled(api_url)
    job = submit(http, model=MINILM, input=inputs)
    got, tokens = check_result(http, job, inputs, which, 40)
    # At least one forward per distinct text; far fewer than one per distinct text of each chunk.
    assert 40 <= settled(api_url, before + 40) - before < forwards_bound(which)
    check_usage(http, inputs, tokens)

    distinct = texts(40, seed="repeat-list")
    assert np.allclose(got, sync_vectors(http, MINILM, distinct)[which], atol=1e-5)


def test_a_file_job_forwards_each_distinct_text_once(http, api_url):
    inputs, which = repeated_inputs("repeat-file")
    uploaded = upload(http, "repeats.txt", "\n".join(inputs).encode() + b"\n")
    assert uploaded.status_code == 200, uploaded.text
    before = settled(api_url)
    job = submit(http, model=MINILM, input_file_id=uploaded.json()["id"])
    _, tokens = check_result(http, job, inputs, which, 40)
    assert 40 <= settled(api_url, before + 40) - before < forwards_bound(which)
    check_usage(http, inputs, tokens)
