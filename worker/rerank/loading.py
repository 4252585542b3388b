"""Load EMBED_RERANK_MODEL: read the checkpoint's config, pick the reranker that scores it, warm it up.

Sequence-classification architectures are cross-encoders (worker/rerank/cross_encoder.py); Qwen
causal LMs are scored with the Qwen3-Reranker yes/no recipe (worker/rerank/qwen3.py).
"""

from __future__ import annotations

import logging
import time

from transformers import AutoConfig, AutoTokenizer

from embedserve.settings import ConfigError, Settings
from worker.engine import pick_device, pick_dtype
from worker.invariant.choice import wants_invariance
from worker.rerank.base import Reranker
from worker.rerank.cross_encoder import CrossEncoder
from worker.rerank.qwen3 import Qwen3Reranker

log = logging.getLogger(__name__)


def reranker_class(config) -> type[Reranker]:
    """Pick the implementation from the config: classification heads, or a Qwen causal LM."""
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
    reranker = cls(source, config, tokenizer, device, dtype, packed=settings.packed, attention=settings.attention,
                   deterministic=wants_invariance(settings.deterministic, device))
    reranker.warmup()
    log.info("loaded reranker %s (%s) on %s (%s), max_length=%d, %s forward in %.1fs", source, reranker.kind,
             device, dtype, reranker.max_length, "padded" if reranker.pads_batches else "packed",
             time.monotonic() - started)
    return reranker
