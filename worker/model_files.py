"""What a model directory says about how to use it: pooling, prompts, max length.

Reads the sentence-transformers files (`modules.json`, `1_Pooling/config.json`,
`sentence_bert_config.json`, `config_sentence_transformers.json`) when present, and falls back
to what the architecture implies: decoder-only embedders (Qwen3 and kin) pool the last token.
Plain JSON only, so it is testable without torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from embedserve import defaults

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


@dataclass(frozen=True)
class ModelFiles:
    """How to turn text into a vector with this model, as far as its files tell."""

    pooling: tuple[str, ...]
    max_seq_length: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    instruction_aware: bool = False

    @property
    def last_token(self) -> bool:
        """Whether pooling reads the last position (so padding goes on the left)."""
        return self.pooling == ("lasttoken",)

    def prefix(self, input_type: str, instruction: str | None) -> str:
        """Text to put before an input of `input_type`, given an optional caller instruction."""
        if instruction is not None:
            if self.instruction_aware:
                # Qwen3's card: documents get no instruction, only queries do.
                return QWEN_QUERY_TEMPLATE.format(instruction=instruction) if input_type == "query" else ""
            return instruction
        if input_type in self.prompts:
            return self.prompts[input_type]
        if self.instruction_aware and input_type == "query":
            return QWEN_QUERY_TEMPLATE.format(instruction=defaults.DEFAULT_QUERY_INSTRUCTION)
        return ""


def read_model_files(path: Path, model_type: str) -> ModelFiles:
    """Inspect a local model directory (config already loaded elsewhere gives `model_type`)."""
    decoder = model_type in DECODER_MODEL_TYPES
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
            return tuple(m for m in POOLING_MODES if m in modes) or None
    return None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
