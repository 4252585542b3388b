"""Qwen3-Reranker (the original causal-LM checkpoints): relevance = P("yes") after the official prompt.

The model card's recipe: a chat prompt asking whether the document meets the query's
requirements, an assistant turn opened with an empty think block, and the score
softmax([logit("no"), logit("yes")])[yes] at the last position, with left padding.

Only what that score needs is computed: the decoder's hidden state at the last position,
projected onto the two lm_head rows for "no" and "yes". That is exactly those two logits of
the full projection, without a (rows x positions x vocabulary) logits tensor (151k columns
for the real checkpoints) and without even the last position's full-vocabulary row.
scripts/bench_rerank_heads.py measured it on an H200 (Qwen3-Reranker-0.6B's shape, 32 x 512
tokens, bf16): 92 ms and 4.4 GiB peak, against 137 ms and 8.7 GiB for the model card's full
logits; transformers' `logits_to_keep=1` was as fast (89 ms). This path was kept over that
keyword because it does the two-row projection in float32 and needs no model-specific kwarg.

Like the embedding engine, the decoder runs packed where EMBED_PACKED allows it
(worker/packed/choice.py): no padding in any layer, and each row's last token read from where the row
ends (worker/packed/decoder.py).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from embedserve import defaults
from embedserve.settings import ConfigError
from worker.engine import Tokenized, cut_left, pad_rows
from worker.invariant.choice import invariance
from worker.invariant.length_groups import by_length
from worker.invariant.products import MIN_ROWS
from worker.packed.choice import choose_packed_forward
from worker.packed.rows import PackedRows
from worker.rerank.base import Reranker, load_with_sdpa

SYSTEM_PROMPT = ('Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
                 'Note that the answer can only be "yes" or "no".')
PREFIX = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def prompt_body(query: str, document: str, instruction: str | None) -> str:
    """The user turn between PREFIX and SUFFIX; the default instruction when none is given."""
    return prompt_header(query, instruction) + document


def prompt_header(query: str, instruction: str | None) -> str:
    """The user turn up to the document: what truncation never cuts."""
    instruction = instruction or defaults.DEFAULT_RERANK_INSTRUCTION
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: "


class Qwen3Reranker(Reranker):
    """Qwen3ForCausalLM scored on the yes/no logits of its last position."""

    kind = "qwen3-causal-lm"

    def __init__(self, source: str, config, tokenizer, device: torch.device, dtype: torch.dtype,
                 packed: str = "auto", attention: str = "auto", deterministic: bool = False):
        super().__init__(source, config, tokenizer, device, deterministic)
        self.yes_id, self.no_id = (_single_token(tokenizer, word) for word in ("yes", "no"))
        self.prefix_ids = tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix_ids = tokenizer.encode(SUFFIX, add_special_tokens=False)
        self.pad_id = next(int(t) for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if t is not None)
        model = load_with_sdpa(AutoModelForCausalLM, source, dtype).to(device).eval()
        self.decoder = model.get_decoder()  # Qwen3Model: embeddings, layers and the final norm
        head = model.get_output_embeddings()
        # Rows [no, yes] of lm_head in float32: the projection is two dot products per pair.
        self.head = head.weight[[self.no_id, self.yes_id]].detach().float()
        bias = getattr(head, "bias", None)
        self.head_bias = bias[[self.no_id, self.yes_id]].detach().float() if bias is not None else None
        self.packed = choose_packed_forward(self.decoder, device, dtype, packed, attention, invariant=deterministic)

    @property
    def pads_batches(self) -> bool:
        """True when a batch costs rows x longest row (padded); False when it costs its real tokens."""
        return self.packed is None

    def tokenize(self, query, documents, *, offset, instruction, truncate, direction="right") -> Tokenized:
        room = max(1, self.max_length - len(self.prefix_ids) - len(self.suffix_ids))
        header = prompt_header(query, instruction)
        bodies = [header + doc for doc in documents]
        # The body is tokenized as one text, as the model card does, so token boundaries match it.
        # "right" truncation cuts the body's end, i.e. the document's; "left" cuts the document's start,
        # after the header's tokens; the fixed prefix and suffix are added after either cut.
        left = truncate and direction == "left"
        with self.tokenizer_lock:
            self.tokenizer.truncation_side = "right"
            encoded = self.tokenizer(bodies, add_special_tokens=False, truncation=truncate and not left,
                                     max_length=room if truncate and not left else None,
                                     return_attention_mask=False)["input_ids"]
            if left:
                # The header's trailing space is glued to the document's first word by byte-level BPE.
                head = len(self.tokenizer.encode(header.rstrip(" "), add_special_tokens=False))
                encoded = [cut_left(ids, room, head=head) for ids in encoded]
        rows = [self.prefix_ids + ids + self.suffix_ids for ids in encoded]
        if not truncate:
            self.check_lengths(rows, offset)
        return Tokenized(rows, sum(len(r) for r in rows))

    @torch.inference_mode()
    def score_batch(self, rows, pause=None) -> np.ndarray:
        if self.packed is None and self.deterministic:  # EMBED_PACKED aside, a decoder that cannot be packed
            return by_length(rows, self._scores)
        return self._scores(rows, pause)

    def _scores(self, rows, pause=None) -> np.ndarray:
        if self.packed is not None:
            # Batch-invariant: at least MIN_ROWS tokens, so no product in the layers is a small one.
            packed = PackedRows.build(rows, self.device, min_tokens=MIN_ROWS if self.deterministic else 0)
            last = packed.unsort(self.packed.forward(packed, pause).index_select(0, packed.last))
        else:  # left padding: every row's last token sits at position -1
            ids, mask = (torch.from_numpy(a).to(self.device) for a in pad_rows(rows, self.pad_id, left=True))
            last = self.decoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1]
        with invariance(self.deterministic):  # one row per pair: a small product
            logits = last.float() @ self.head.T  # (rows, 2): [no, yes]
        if self.head_bias is not None:
            logits = logits + self.head_bias
        scores = torch.softmax(logits, dim=-1)[:, 1]
        return scores.unsqueeze(1).cpu().numpy().astype(np.float32)


def _single_token(tokenizer, word: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(word)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ConfigError(f"EMBED_RERANK_MODEL's tokenizer has no single token {word!r}; "
                          "it is not a Qwen3-Reranker checkpoint")
    return int(token_id)
