"""Rerankers: score (query, document) pairs, behind one small interface with two implementations.

`load_reranker` reads the checkpoint's config and picks the implementation: sequence-
classification architectures are cross-encoders (this module), Qwen causal LMs are scored with
the Qwen3-Reranker yes/no recipe (worker/qwen3_reranker.py). Like the embedding engine,
`tokenize` runs on the task threads and `score_batch` only on the batcher's forward thread.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from embedserve import defaults
from embedserve.errors import InvalidRequest
from embedserve.registry import ModelCard, ModelKind
from embedserve.settings import ConfigError, Settings
from worker.engine import Tokenized, pad_rows, pick_device, pick_dtype

log = logging.getLogger(__name__)


class Reranker:
    """What the rerank service needs from a model: pairs to token rows, rows to one score each."""

    kind = "reranker"
    pads_batches = True  # a batch costs rows x longest row; a packed reranker overrides it

    def __init__(self, source: str, config, tokenizer, device: torch.device):
        self.source = source
        self.config = config
        self.tokenizer = tokenizer
        self.device = device
        self.model_type = config.model_type
        self.vocab_size = max(len(tokenizer), int(getattr(config, "vocab_size", 0) or 0))
        self.max_length = model_max_length(tokenizer, config)
        # A fast tokenizer's truncation setting is state on the shared Rust object, set per call;
        # task threads asking with and without truncation at once would race on it.
        self.tokenizer_lock = threading.Lock()

    def tokenize(self, query: str, documents: list[str], *, offset: int, instruction: str | None,
                 truncate: bool, direction: str = "right") -> Tokenized:
        """One token row per (query, document) pair; too long is a 400 unless truncating, which cuts the
        document's end (`direction` "right") or its start ("left"); the prompt and special tokens stay."""
        raise NotImplementedError

    def score_batch(self, rows: list[list[int]]) -> np.ndarray:
        """Forward one batch; an (n, 1) float32 array of relevance scores."""
        raise NotImplementedError

    def card(self, name: str, aliases: tuple[str, ...]) -> ModelCard:
        """What this worker announces to the API."""
        return ModelCard(name=name, aliases=aliases, kind=ModelKind.RERANK.value, max_length=self.max_length,
                         vocab_size=self.vocab_size, model_type=self.model_type, created=int(time.time()))

    def warmup(self) -> None:
        """One small forward, so the first request does not pay for lazy initialisation."""
        self.score_batch(self.tokenize("warm up", ["a", "b"], offset=0, instruction=None, truncate=True).rows)

    def check_lengths(self, rows: list[list[int]], offset: int) -> None:
        """Raise context_length_exceeded for the first pair over the model's maximum."""
        for i, row in enumerate(rows):
            if len(row) > self.max_length:
                raise InvalidRequest(
                    f"documents[{offset + i}] with the query is {len(row)} tokens, more than this model's maximum "
                    f'of {self.max_length}; shorten it or send "truncate": true', param="documents",
                    code="context_length_exceeded")


class PairRow(list):
    """Token ids of one pair, plus where the second segment starts (for token_type_ids).

    The batcher only needs a list of ints and hands the same object to `score_batch`, so the
    segment boundary travels with the row instead of being guessed from [SEP] positions.
    """

    second_segment: int


class CrossEncoder(Reranker):
    """A sequence-classification model over `[CLS] query [SEP] document [SEP]`, with its own activation."""

    kind = "cross-encoder"

    def __init__(self, source: str, config, tokenizer, device: torch.device, dtype: torch.dtype,
                 packed: str = "auto", attention: str = "auto"):  # cross-encoders always run padded
        super().__init__(source, config, tokenizer, device)
        self.activation = cross_encoder_activation(config)
        self.uses_token_types = "token_type_ids" in tokenizer.model_input_names
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.model = load_with_sdpa(AutoModelForSequenceClassification, source, dtype).to(device).eval()

    def tokenize(self, query, documents, *, offset, instruction, truncate, direction="right") -> Tokenized:
        with self.tokenizer_lock:
            # longest_first cuts the longer of query and document (the document, but for a short one), on
            # the side the tokenizer's truncation_side names; [CLS] and both [SEP]s are added after the cut.
            self.tokenizer.truncation_side = "left" if direction == "left" else "right"
            encoded = self.tokenizer([query] * len(documents), list(documents),
                                     truncation="longest_first" if truncate else False,
                                     max_length=self.max_length if truncate else None,
                                     return_attention_mask=False, return_token_type_ids=True)
        rows = []
        for ids, types in zip(encoded["input_ids"], encoded["token_type_ids"]):
            row = PairRow(ids)
            row.second_segment = types.index(1) if 1 in types else len(ids)
            rows.append(row)
        if not truncate:
            self.check_lengths(rows, offset)
        return Tokenized(rows, sum(len(r) for r in rows))

    @torch.inference_mode()
    def score_batch(self, rows) -> np.ndarray:
        ids, mask = pad_rows(rows, self.pad_id, left=False)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if self.uses_token_types:
            # 1 from where the second segment starts to the row's end; padding stays 0.
            starts = np.array([getattr(row, "second_segment", len(row)) for row in rows])[:, None]
            inputs["token_type_ids"] = ((np.arange(ids.shape[1]) >= starts) & (mask == 1)).astype(np.int64)
        inputs = {k: torch.from_numpy(v) for k, v in inputs.items()}
        logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits.float()
        return self.activation(logits).unsqueeze(1).cpu().numpy().astype(np.float32)


def cross_encoder_activation(config):
    """The score function sentence-transformers' CrossEncoder would apply to this model's logits."""
    labels = int(getattr(config, "num_labels", 1))
    if labels == 2:
        return lambda logits: torch.softmax(logits, dim=-1)[:, 1]  # P(positive class)
    if labels != 1:
        raise ConfigError(f"a cross-encoder reranker needs 1 or 2 labels; this model has {labels}")
    st = getattr(config, "sentence_transformers", None) or {}
    # sentence-transformers >= 4 writes config.sentence_transformers; older versions the flat key.
    name = st.get("activation_fn") or getattr(config, "sbert_ce_default_activation_function", None) or "Sigmoid"
    short = name.rsplit(".", 1)[-1]
    functions = {"Sigmoid": torch.sigmoid, "Identity": lambda x: x, "Tanh": torch.tanh}
    if short not in functions:
        raise ConfigError(f"unsupported cross-encoder activation {name!r}; expected Sigmoid, Identity or Tanh")
    return lambda logits: functions[short](logits[:, 0])


def model_max_length(tokenizer, config) -> int:
    """Longest pair the model takes: its positions, its tokenizer's limit, and RERANK_MAX_TOKENS."""
    limits = [defaults.RERANK_MAX_TOKENS, getattr(config, "max_position_embeddings", None)]
    if isinstance(tokenizer.model_max_length, int) and tokenizer.model_max_length < 10**7:
        limits.append(tokenizer.model_max_length)
    return min(int(x) for x in limits if x)


def load_with_sdpa(auto_class, source: str, dtype: torch.dtype):
    """from_pretrained with SDPA attention where the architecture has it."""
    try:
        return auto_class.from_pretrained(source, dtype=dtype, attn_implementation="sdpa")
    except (ValueError, ImportError) as exc:
        log.info("SDPA attention unavailable for %s (%s); using the default", source, exc)
        return auto_class.from_pretrained(source, dtype=dtype)


def reranker_class(config) -> type[Reranker]:
    """Pick the implementation from the config: classification heads, or a Qwen causal LM."""
    from worker.qwen3_reranker import Qwen3Reranker

    architectures = list(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return CrossEncoder
    if any(a.endswith("ForCausalLM") for a in architectures) and config.model_type.startswith("qwen"):
        return Qwen3Reranker
    raise ConfigError(f"EMBED_RERANK_MODEL is neither a cross-encoder (...ForSequenceClassification) nor a "
                      f"Qwen3-Reranker (Qwen ...ForCausalLM): architectures={architectures}, "
                      f"model_type={config.model_type!r}")


def load_reranker(settings: Settings) -> Reranker:
    """Load EMBED_RERANK_MODEL on the configured device and warm it up."""
    device = pick_device(settings.device)
    dtype = pick_dtype(settings.dtype, device)
    source = settings.rerank_model
    started = time.monotonic()
    config = AutoConfig.from_pretrained(source)
    cls = reranker_class(config)
    tokenizer = AutoTokenizer.from_pretrained(source)
    reranker = cls(source, config, tokenizer, device, dtype, packed=settings.packed, attention=settings.attention)
    reranker.warmup()
    log.info("loaded reranker %s (%s) on %s (%s), max_length=%d, %s forward in %.1fs", source, reranker.kind,
             device, dtype, reranker.max_length, "padded" if reranker.pads_batches else "packed",
             time.monotonic() - started)
    return reranker
