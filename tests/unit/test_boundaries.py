"""The API never imports torch/transformers; workers never import Flask; shared code neither."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.stack import ROOT

CHECKS = [
    ("api.app, api.server, api.routes.embeddings, api.routes.rerank, api.validation.rerank, api.routes.jobs, "
     "api.routes.files, api.routes.batches, api.bulk.result_formats, api.bulk.batch_output", ("torch", "transformers", "numpy")),
    ("worker.main, worker.tasks, worker.embedding_service, worker.engine, worker.batcher, worker.rerank.loading, worker.rerank.cross_encoder, "
     "worker.rerank.qwen3, worker.rerank.service, worker.chunk_runner, worker.bulk_slots", ("flask",)),
    ("embedserve.settings, embedserve.protocol, embedserve.fleet.registry, embedserve.celery_app, embedserve.cli.main, "
     "embedserve.jobs.records, embedserve.jobs.chunks, embedserve.jobs.compaction",
     ("torch", "transformers", "flask")),
]


@pytest.mark.parametrize("modules,forbidden", CHECKS, ids=["api", "worker", "shared"])
def test_import_boundaries(modules, forbidden):
    code = (f"import sys; import {modules}; "
            f"bad = [m for m in {forbidden!r} if m in sys.modules]; print(','.join(bad)); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{modules} imported {result.stdout.strip()} {result.stderr[-2000:]}"
