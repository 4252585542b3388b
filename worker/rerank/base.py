"""What every reranker is: pairs to token rows, rows to one score each (the interface the rerank service runs).

Implementations: the cross-encoder (worker/rerank/cross_encoder.py) and the Qwen3-Reranker yes/no
recipe (worker/rerank/qwen3.py); worker/rerank/loading.py picks one from the checkpoint's config.
Like the embedding engine, `tokenize` runs on the task threads and `score_batch` only on the
batcher's forward thread.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import torch

from embedserve import defaults
from embedserve.errors import InvalidRequest
from embedserve.fleet.registry import ModelCard, ModelKind
from worker.engine import Tokenized

log = logging.getLogger(__name__)


class Reranker:
    """What the rerank service needs from a model: pairs to token rows, rows to one score each."""

    kind = "reranker"
    pads_batches = True  # a batch costs rows x longest row; a packed reranker overrides it

    def __init__(self, source: str, config, tokenizer, device: torch.device, deterministic: bool = False):
        self.source = source
        # The batch-invariant forward (worker/invariant/): a pair's score does not depend on its batch.
        self.deterministic = deterministic
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
