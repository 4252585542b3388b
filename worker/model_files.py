"""What a model directory says about how to use it: pooling, prompts, max length.

Reads the sentence-transformers files (`modules.json`, `1_Pooling/config.json`,
`sentence_bert_config.json`, `config_sentence_transformers.json`) when present, and falls back
to what the architecture implies: decoder-only embedders (Qwen3 and kin) pool the last token.
Plain JSON only, so it is testable without torch.

A sentence-transformers pipeline is served only when every module in it is one the engine
applies: Transformer, Pooling, then any Dense and Normalize modules on the pooled vector
(worker/st_modules.py applies those). Anything else (LayerNorm, Router, a custom module, a Dense
on the token embeddings...) is refused at load: serving the pipeline without it would silently
give other vectors than sentence-transformers does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from embedserve import defaults
from embedserve.settings import ConfigError

# Pooling modes in the order sentence-transformers concatenates them.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "lasttoken")
_ST_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_lasttoken": "lasttoken",
}
# Architectures whose embedding models pool the last token and are instruction-aware
# (Qwen3-Embedding, gte-Qwen2, e5-mistral and similar).
DECODER_MODEL_TYPES = frozenset({"qwen2", "qwen3", "mistral", "llama", "gemma", "gemma2", "gemma3_text"})
QWEN_QUERY_TEMPLATE = "Instruct: {instruction}\nQuery:"

# The modules.json types served, by class name. sentence-transformers has moved them between
# releases (`sentence_transformers.models.Dense` up to 4.x, `sentence_transformers.base.modules.dense.Dense`
# in 5.x and later), so the module path may be any under sentence_transformers; a class of the same name
# from another package (remote code) is not one of these and is refused.
ST_SERVED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
# Dense activations that are loaded by name, as sentence-transformers would, without importing an
# arbitrary dotted path from a model's config: torch.nn classes taking no arguments.
DENSE_ACTIVATIONS = ("Identity", "Tanh", "ReLU", "GELU", "Sigmoid", "SiLU", "Softsign", "Hardtanh")
# The features key Dense and Normalize must read and write for us: the pooled sentence embedding.
SENTENCE_EMBEDDING = "sentence_embedding"


@dataclass(frozen=True)
class Dense:
    """A sentence-transformers Dense module: activation(linear(x)) (+ x, or a projection of it, if residual)."""

    path: Path  # its folder, holding config.json and model.safetensors or pytorch_model.bin
    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "Tanh"  # a DENSE_ACTIVATIONS name
    residual: bool = False


@dataclass(frozen=True)
class Normalize:
    """A sentence-transformers Normalize module: L2-normalize the sentence embedding."""


@dataclass(frozen=True)
class ModelFiles:
    """How to turn text into a vector with this model, as far as its files tell."""

    pooling: tuple[str, ...]
    max_seq_length: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    instruction_aware: bool = False
    # Modules applied to the pooled vector, in order (sentence-transformers' Dense and Normalize).
    head: tuple[Dense | Normalize, ...] = ()

    @property
    def last_token(self) -> bool:
        """Whether pooling reads the last position (so padding goes on the left)."""
        return self.pooling == ("lasttoken",)

    def prefix(self, input_type: str, instruction: str | None) -> str:
        """Text to put before an input of `input_type`, given an optional caller instruction.

        `input_type` is query or document, or (Cohere's /v2/embed) classification or clustering:
        those take the model's prompt of that name, else on an instruction-aware model an instruction
        for the task (Qwen3 instructs every input but a retrieval document), else no prompt.
        """
        if instruction is not None:
            if self.instruction_aware:
                # Qwen3's card: documents get no instruction, only queries do.
                return QWEN_QUERY_TEMPLATE.format(instruction=instruction) if input_type != "document" else ""
            return instruction
        named = self._prompt(input_type)
        if named is not None:
            return named
        if self.instruction_aware and input_type != "document":
            task = defaults.TASK_INSTRUCTIONS.get(input_type, defaults.DEFAULT_QUERY_INSTRUCTION)
            return QWEN_QUERY_TEMPLATE.format(instruction=task)
        return ""

    def _prompt(self, name: str) -> str | None:
        """The prompt the model's files name `name`; sentence-transformers models spell task prompts
        either way ("clustering", nomic's and EmbeddingGemma's "Clustering"), so any case matches."""
        if name in self.prompts:
            return self.prompts[name]
        return next((v for k, v in self.prompts.items() if k.casefold() == name.casefold()), None)


def read_model_files(path: Path, model_type: str) -> ModelFiles:
    """Inspect a local model directory (config already loaded elsewhere gives `model_type`)."""
    decoder = model_type in DECODER_MODEL_TYPES
    head = _read_head(path)  # first: a pipeline we cannot serve is refused whatever else it says
    pooling = _read_pooling(path) or (("lasttoken",) if decoder else ("mean",))
    bert_cfg = _read_json(path / "sentence_bert_config.json") or {}
    st_cfg = _read_json(path / "config_sentence_transformers.json") or {}
    prompts = {k: v for k, v in (st_cfg.get("prompts") or {}).items() if isinstance(v, str)}
    max_seq = bert_cfg.get("max_seq_length")
    return ModelFiles(
        pooling=pooling,
        max_seq_length=int(max_seq) if isinstance(max_seq, int) and max_seq > 0 else None,
        prompts=prompts,
        instruction_aware=decoder,
        head=head,
    )


def _read_pooling(path: Path) -> tuple[str, ...] | None:
    modules = _read_json(path / "modules.json")
    if not isinstance(modules, list):
        return None
    for module in modules:
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".Pooling"):
            cfg = _read_json(path / module.get("path", "") / "config.json") or {}
            modes = {mode for key, mode in _ST_POOLING_KEYS.items() if cfg.get(key)}
            if cfg.get("pooling_mode") in POOLING_MODES:  # newer sentence-transformers spelling
                modes.add(cfg["pooling_mode"])
            # A mode we do not implement (weighted mean...) must not quietly become mean pooling.
            unknown = sorted(key for key, value in cfg.items() if key.startswith("pooling_mode_") and value
                             and key not in _ST_POOLING_KEYS)
            if isinstance(cfg.get("pooling_mode"), str) and cfg["pooling_mode"] not in POOLING_MODES:
                unknown.append(cfg["pooling_mode"])
            if unknown:
                raise ConfigError(f"{path}: the Pooling module asks for {', '.join(unknown)}, which this server does "
                                  f"not implement (it pools by {', '.join(POOLING_MODES)}).")
            return tuple(m for m in POOLING_MODES if m in modes) or None
    return None


def _read_head(path: Path) -> tuple[Dense | Normalize, ...]:
    """The Dense/Normalize modules after Pooling; ConfigError for a pipeline the engine would serve wrong."""
    modules = _read_json(path / "modules.json")
    if not isinstance(modules, list):
        return ()
    head: list[Dense | Normalize] = []
    pooled = False
    for module in modules:
        kind = _module_kind(module, path)
        folder = path / str(module.get("path", ""))
        if kind == "Pooling":
            pooled = True
        elif kind in ("Dense", "Normalize"):
            if not pooled:
                raise ConfigError(f"{path}: the sentence-transformers {kind} module {module['type']!r} comes before "
                                  "Pooling (on the token embeddings); only modules on the pooled embedding are supported")
            head.append(_read_dense(folder, module["type"]) if kind == "Dense" else _read_normalize(folder))
    return tuple(head)


def _module_kind(module, path: Path) -> str:
    """The served class name of one modules.json entry, or ConfigError naming the module type."""
    kind = module.get("type") if isinstance(module, dict) else None
    if not isinstance(kind, str):
        raise ConfigError(f"{path}/modules.json: an entry without a module type: {module!r}")
    short = kind.rsplit(".", 1)[-1]
    if kind.startswith("sentence_transformers.") and short in ST_SERVED_MODULES:
        return short
    raise ConfigError(f"{path}: the sentence-transformers module {kind!r} ({module.get('path') or 'root'}) is not "
                      f"supported; only {', '.join(ST_SERVED_MODULES)} are, and serving the model without it "
                      "would give other vectors than sentence-transformers")


def _read_dense(folder: Path, kind: str) -> Dense:
    cfg = _read_json(folder / "config.json")
    if not isinstance(cfg, dict) or not all(isinstance(cfg.get(k), int) for k in ("in_features", "out_features")):
        raise ConfigError(f"{folder}/config.json: not a sentence-transformers Dense config ({kind})")
    _check_reads_sentence_embedding(folder, cfg, "Dense")
    # sentence-transformers' own default when the config names none.
    name = cfg.get("activation_function") or "torch.nn.modules.activation.Tanh"
    short = name.rsplit(".", 1)[-1]
    if not (name.startswith("torch.nn.") and short in DENSE_ACTIVATIONS):
        raise ConfigError(f"{folder}: Dense activation function {name!r} is not supported; "
                          f"expected one of torch.nn's {', '.join(DENSE_ACTIVATIONS)}")
    return Dense(path=folder, in_features=cfg["in_features"], out_features=cfg["out_features"],
                 bias=bool(cfg.get("bias", True)), activation=short, residual=bool(cfg.get("use_residual", False)))


def _read_normalize(folder: Path) -> Normalize:
    cfg = _read_json(folder / "config.json")  # older releases save no config at all
    _check_reads_sentence_embedding(folder, cfg if isinstance(cfg, dict) else {}, "Normalize")
    return Normalize()


def _check_reads_sentence_embedding(folder: Path, cfg: dict, kind: str) -> None:
    """Newer releases let a module read or write another features key (token embeddings, for multi-vector models)."""
    for key in ("module_input_name", "module_output_name"):
        if cfg.get(key, SENTENCE_EMBEDDING) not in (None, SENTENCE_EMBEDDING):
            raise ConfigError(f"{folder}: this {kind} module has {key}={cfg[key]!r}; only one on "
                              f"{SENTENCE_EMBEDDING!r} is supported")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
