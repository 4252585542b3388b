"""A sentence-transformers pipeline with Dense + Normalize through a real worker and API equals
sentence-transformers' encode(); a pipeline with a module the worker cannot apply never serves."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from tests.fixtures import tiny_models
from tests.integration.helpers import cosines, vectors
from tests.stack import private_stack, wait_until

pytestmark = pytest.mark.slow  # starts stacks of its own: API and worker processes (tests/stack.py)

NAME = "tiny-st-dense"
KEY = "st-modules-test-key-1"
TEXTS = ["Hi", "The cat reads the document quickly.", "A small robot retrieves many passages. " * 8]


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory):
    return tiny_models.build_tiny_st_dense(tmp_path_factory.mktemp("st") / "dense")


@pytest.fixture(scope="module")
def stack(dense_dir, tmp_path_factory):
    with private_stack(tmp_path_factory.mktemp("st-logs")) as stack:
        stack.start_worker(NAME, EMBED_MODEL=str(dense_dir), EMBED_MODEL_NAME=NAME)
        _, url = stack.start_api(EMBED_API_KEYS=KEY)
        stack.url = url
        yield stack


def embed(stack, **body) -> np.ndarray:
    import requests

    response = requests.post(stack.url + "/v1/embeddings", json={"model": NAME, "input": TEXTS, **body},
                             headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert response.status_code == 200, response.text
    return vectors(response)


@pytest.mark.parametrize("dimensions", [None, 8])
def test_served_vectors_equal_sentence_transformers(stack, dense_dir, dimensions):
    ours = embed(stack, **({"dimensions": dimensions} if dimensions else {}))
    model = SentenceTransformer(str(dense_dir), device="cpu", truncate_dim=dimensions)
    expected = model.encode(TEXTS, normalize_embeddings=True)
    assert ours.shape == expected.shape == (len(TEXTS), dimensions or tiny_models.ST_DENSE_OUT)
    assert cosines(ours, expected).min() >= 0.9999


def test_worker_refuses_a_module_it_cannot_apply(stack, dense_dir, tmp_path):
    path = tmp_path / "with-layernorm"
    shutil.copytree(dense_dir, path)
    modules = json.loads((path / "modules.json").read_text())
    modules.append({"idx": 4, "name": "4", "path": "4_LayerNorm", "type": "sentence_transformers.models.LayerNorm"})
    (path / "modules.json").write_text(json.dumps(modules))
    process = stack.spawn("worker-layernorm", "worker", EMBED_MODEL=str(path), EMBED_MODEL_NAME="layernorm")
    wait_until(lambda: not process.alive(), 120, "the worker to exit")
    assert process.popen.returncode != 0
    assert "'sentence_transformers.models.LayerNorm'" in process.log() and str(path) in process.log()
    assert stack.redis.client().zcard("embed:workers:layernorm") == 0  # it never announced itself
