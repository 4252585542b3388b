"""A server process that streamed big results gives the memory back (api/memory.py): its resident anonymous
memory after downloads in every format stays near what it was before them (pyarrow imported), not that
plus a result's size.

The process is a fresh Python set up as api/server.py sets up each gunicorn worker (memory.prepare, then
the app's imports); it streams a 40,000 x 256 float32 result (~40 MB of vectors, ~200 MB of ndjson)
from a local job store through the route's STREAMS, as the API does, without HTTP in between.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from embedserve.jobs import results as result_files
from embedserve.jobs.chunks import ChunkOutput
from embedserve.jobs.data import job_prefix
from embedserve.jobs.store import open_store
from tests.stack import ROOT

ROWS, DIM = 40_000, 256
GROWTH_LIMIT_MIB = 64  # the allocators keep some (+28 to +37 MiB measured); without release, +160 to +220

SERVER = """
import json, sys
from api import memory
memory.prepare()
import api.app  # what a server process imports at start
from api.bulk.result_formats import STREAMS
from embedserve.jobs.data import JobData
from embedserve.jobs.records import Job, JobStatus
from embedserve.jobs.store import open_store

def anon_mib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

data = JobData(open_store(sys.argv[1]))
job = Job(id="job_m", owner="o", kind="job", model="m", status=JobStatus.COMPLETED, created_at=0,
          total=int(sys.argv[2]), chunks=1, dim=int(sys.argv[3]), compacted=1)
def serve(fmt):
    return sum(len(piece) for piece in STREAMS[fmt](data, job))

import pyarrow.parquet  # what the first result imports, so that it is not counted as the results' memory
first = anon_mib()
for _ in range(2):
    sizes = {fmt: serve(fmt) for fmt in STREAMS}
print(json.dumps({"first": first, "after": anon_mib(), "sizes": sizes, "numpy": sys.modules.get("numpy") is not None}))
"""


def test_streaming_results_again_leaves_the_process_no_bigger(tmp_path):
    rng = np.random.default_rng(5)
    outputs = []
    for start in range(0, ROWS, 1000):
        vectors = rng.standard_normal((1000, DIM)).astype("<f4")
        outputs.append(ChunkOutput(items=list(range(start, start + 1000)), rows=[1] * 1000, tokens=[7] * 1000,
                                   dim=DIM, vectors=vectors.tobytes(), errors=[None] * 1000))
    result_files.write_result(open_store(tmp_path.as_uri()), job_prefix("job_m"), outputs)
    done = subprocess.run([sys.executable, "-c", SERVER, tmp_path.as_uri(), str(ROWS), str(DIM)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert figures["sizes"]["application/x-ndjson"] > 150 * 2**20, figures
    assert not figures["numpy"], "pyarrow imported numpy in a server process"
    assert figures["after"] - figures["first"] < GROWTH_LIMIT_MIB, figures
