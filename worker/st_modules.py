"""sentence-transformers' Dense and Normalize modules, applied to the pooled vector as it does.

LaBSE-style models put a Dense projection (and often a Normalize) after Pooling; without them the
pooled transformer output is a different vector, of another width. worker/model_files.py reads
which modules a pipeline has (and refuses any other kind); this module loads their weights and
applies them, mirroring sentence_transformers' Dense.forward and Normalize.forward:

    Dense:     x = activation(linear(x))   (+ x, or + residual(x) when widths differ, if use_residual)
    Normalize: x = x / ||x||

The head runs in float32 whatever the model's dtype: it is one small matrix per module, and
sentence-transformers keeps these weights in float32 too.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from embedserve.settings import ConfigError
from worker.model_files import Dense, Normalize


class SentenceHead:
    """The modules after Pooling, loaded onto `device`; call with pooled (rows x in_dim) vectors."""

    def __init__(self, modules: tuple[Dense | Normalize, ...], in_dim: int, device: torch.device):
        self.steps: list = []
        width = in_dim
        for module in modules:
            if isinstance(module, Dense):
                if module.in_features != width:
                    raise ConfigError(f"{module.path}: Dense takes {module.in_features} values but receives {width} "
                                      "(the pooled embedding or the previous Dense)")
                self.steps.append(_DenseStep(module, device))
                width = module.out_features
            else:
                self.steps.append(lambda x: F.normalize(x, p=2, dim=-1))
        self.out_dim = width

    def __call__(self, pooled: torch.Tensor) -> torch.Tensor:
        x = pooled.float()
        for step in self.steps:
            x = step(x)
        return x


class _DenseStep:
    def __init__(self, spec: Dense, device: torch.device):
        state = _load_weights(spec.path)
        expected = {"linear.weight"} | ({"linear.bias"} if spec.bias else set())
        if spec.residual and spec.in_features != spec.out_features:
            expected.add("residual.weight")
        if set(state) != expected:
            raise ConfigError(f"{spec.path}: Dense weights hold {sorted(state)}, expected {sorted(expected)}")
        tensor = lambda key: state[key].to(device=device, dtype=torch.float32)  # noqa: E731
        self.weight = tensor("linear.weight")
        if tuple(self.weight.shape) != (spec.out_features, spec.in_features):
            raise ConfigError(f"{spec.path}: Dense weight is {tuple(self.weight.shape)}, its config says "
                              f"{spec.out_features}x{spec.in_features}")
        self.bias = tensor("linear.bias") if spec.bias else None
        self.residual = spec.residual
        self.projection = tensor("residual.weight") if "residual.weight" in state else None
        # An allow-listed torch.nn class with no arguments, as sentence-transformers instantiates it.
        self.activation = getattr(torch.nn, spec.activation)()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activation(F.linear(x, self.weight, self.bias))
        if self.residual:
            out = out + (x if self.projection is None else F.linear(x, self.projection))
        return out


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A module folder's weights: model.safetensors, or pytorch_model.bin (older saves) as plain tensors only."""
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ConfigError(f"{folder}: no model.safetensors or pytorch_model.bin for the Dense module")
