"""Cross-encoders: sequence-classification checkpoints scoring a (query, document) pair in one forward."""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from embedserve.settings import ConfigError
from worker.engine import Tokenized, pad_rows
from worker.invariant.length_groups import by_length
from worker.rerank.base import Reranker, load_with_sdpa


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
                 packed: str = "auto", attention: str = "auto", deterministic: bool = False):
        # Cross-encoders always run padded; batch-invariant, one length at a time (worker/invariant/).
        super().__init__(source, config, tokenizer, device, deterministic)
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
        return by_length(rows, self._scores) if self.deterministic else self._scores(rows)

    def _scores(self, rows) -> np.ndarray:
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
