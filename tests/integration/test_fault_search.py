"""A few fixed seeds of the randomized fault search (scripts/fault_search.py), run as the script runs them.

Each seed starts its own stack (private Redis with an append-only file, one API, two or three
MiniLM workers, one of them behind a reply-dropping proxy), runs a small mixed workload under a
schedule of faults drawn from the seed, and checks the exactly-once invariants; the script
prints the schedule and every violation. Slow (a minute or two a seed): `-m "not slow"` skips it.
Replay a failing seed with `.venv/bin/python -m scripts.fault_search --seed S --store file|s3` and the knobs below.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.stack import ROOT

# Small: a handful of jobs and batches of up to 120 inputs, faults every ~4 s for 15 s.
KNOBS = ["--jobs", "5", "--max-inputs", "120", "--pool", "160", "--duration", "15", "--fault-gap", "4"]
# Between them every fault kind (28: api_kill, redis_restart, drop_reply JOBARG; 12: the three worker faults
# and redis_restart on S3; 21: worker_kill, redis_kill, drop_reply EVALSHA), batches, cancels, deletes, an expiry.
SEEDS = [(28, "file"), (12, "s3"), (21, "file")]


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("seed,store", SEEDS, ids=[f"seed{s}-{store}" for s, store in SEEDS])
def test_fault_search_seed(seed, store, tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, "-m", "scripts.fault_search", "--seed", str(seed),
                          "--store", store, *KNOBS, "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=380)
    assert out.exists(), f"the search did not finish (rc {run.returncode}):\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    (result,) = json.loads(out.read_text())
    assert result["faults"], "the seed applied no fault"
    assert not result["violations"], f"seed {seed} ({store}) broke invariants:\n{run.stdout[-8000:]}"
    assert run.returncode == 0, run.stdout[-4000:]
