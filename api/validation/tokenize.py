"""What /detokenize checks against the model card: its ids within the vocabulary.

The contract (api/contract/tokenize.py) says the ids are non-negative integers; their upper bound
differs by model. A model only declared (EMBED_MODELS) has no vocabulary on its card yet: then
the worker, which has the tokenizer, refuses with the same message and code.
"""

from __future__ import annotations

from embedserve.fleet.registry import ModelCard
from embedserve.token_ids import token_out_of_vocabulary


def check_token_ids(tokens: list[int], card: ModelCard) -> None:
    """Refuse the first id at or past the card's vocabulary size (code invalid_token_id)."""
    if not card.vocab_size:
        return
    for i, token in enumerate(tokens):
        if token >= card.vocab_size:
            raise token_out_of_vocabulary(i, token, card.vocab_size)
