"""sentence-transformers pipelines with Dense and Normalize after pooling: the engine gives
sentence-transformers' own vectors, and refuses modules it does not apply."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedserve.settings import ConfigError
from tests.fixtures import tiny_models
from worker.embedding_service import truncate_dimensions
from worker.engine import EmbeddingEngine

TEXTS = [
    "Hi",
    "The cat reads the document quickly.",
    "A small robot retrieves many passages about python for the test, " * 6,
    "our team",
]


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory):
    return tiny_models.build_tiny_st_dense(tmp_path_factory.mktemp("st") / "dense")


@pytest.fixture(scope="module")
def dense_no_normalize_dir(tmp_path_factory):
    return tiny_models.build_tiny_st_dense(tmp_path_factory.mktemp("st") / "dense-raw", normalize=False)


def engine(path, packed: str = "off") -> EmbeddingEngine:
    return EmbeddingEngine(str(path), torch.device("cpu"), torch.float32, packed=packed)


def ours(eng: EmbeddingEngine, texts=TEXTS) -> np.ndarray:
    rows = eng.tokenize(texts, offset=0, input_type="document", instruction=None, truncate=True).rows
    return eng.embed_batch(rows)


def reference(path, dimensions: int | None = None) -> np.ndarray:
    model = SentenceTransformer(str(path), device="cpu", truncate_dim=dimensions)
    return model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("packed", ["off", "on"])
def test_dense_and_normalize_give_sentence_transformers_vectors(dense_dir, packed):
    eng = engine(dense_dir, packed)
    assert eng.dim == tiny_models.ST_DENSE_OUT  # the Dense layer's width, not the transformer's
    got, expected = ours(eng), reference(dense_dir)
    assert got.shape == expected.shape == (len(TEXTS), tiny_models.ST_DENSE_OUT)
    assert cosines(got, expected).min() >= 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_dimensions_truncate_after_dense(dense_dir):
    """`dimensions` cuts the Dense output (then re-normalizes), as sentence-transformers' truncate_dim does."""
    got = truncate_dimensions(ours(engine(dense_dir)), 8)
    expected = reference(dense_dir, dimensions=8)
    assert got.shape == expected.shape == (len(TEXTS), 8)
    assert cosines(got, expected).min() >= 0.9999


def test_dense_without_normalize(dense_no_normalize_dir):
    got = ours(engine(dense_no_normalize_dir))
    assert cosines(got, reference(dense_no_normalize_dir)).min() >= 0.9999


def copy_with(src, dst, edit) -> str:
    shutil.copytree(src, dst)
    edit(dst)
    return str(dst)


def test_unknown_module_type_is_refused(dense_dir, tmp_path):
    def add_layer_norm(path):
        modules = json.loads((path / "modules.json").read_text())
        modules.append({"idx": 4, "name": "4", "path": "4_LayerNorm",
                        "type": "sentence_transformers.models.LayerNorm"})
        (path / "modules.json").write_text(json.dumps(modules))

    path = copy_with(dense_dir, tmp_path / "m", add_layer_norm)
    with pytest.raises(ConfigError, match=r"sentence_transformers\.models\.LayerNorm") as caught:
        engine(path)
    assert path in str(caught.value)


def test_untrusted_activation_is_refused(dense_dir, tmp_path):
    def custom_activation(path):
        config = json.loads((path / "2_Dense" / "config.json").read_text())
        config["activation_function"] = "my_package.Swish"
        (path / "2_Dense" / "config.json").write_text(json.dumps(config))

    with pytest.raises(ConfigError, match=r"my_package\.Swish"):
        engine(copy_with(dense_dir, tmp_path / "m", custom_activation))


def test_dense_weights_in_either_file_format(dense_dir, tmp_path):
    """A module's weights are in model.safetensors (newer saves) or pytorch_model.bin (3.x saves): swap
    whichever this sentence-transformers wrote for the other, and the vectors stay the same."""
    from safetensors.torch import load_file, save_file

    def swap_format(path):
        folder = path / "2_Dense"
        if (folder / "model.safetensors").exists():
            torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
            (folder / "model.safetensors").unlink()
        else:
            save_file(torch.load(folder / "pytorch_model.bin", weights_only=True), str(folder / "model.safetensors"))
            (folder / "pytorch_model.bin").unlink()

    got = ours(engine(copy_with(dense_dir, tmp_path / "m", swap_format)))
    assert cosines(got, reference(dense_dir)).min() >= 0.9999
