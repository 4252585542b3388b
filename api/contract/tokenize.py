"""The /tokenize and /detokenize bodies: vLLM's (TokenizeCompletionRequest, DetokenizeRequest).

vLLM's chat form of /tokenize (`messages`) is not taken: no model served here has a chat template.
"""

from __future__ import annotations

from pydantic import Field

from api.contract.body import Body
from api.contract.fields import Name, Text, TokenId

MODEL = Field(None, description="Served name or alias of any served model (embedding or reranker); optional "
                                "when one embedding model is served.")


class TokenizeBody(Body):
    """Text to turn into the model's token ids."""

    prompt: Text
    model: Name = MODEL
    add_special_tokens: bool = Field(True, description="Add the tokenizer's special tokens (e.g. [CLS]/[SEP], "
                                                       "<|endoftext|>) as the model's inputs get them.")
    return_token_strs: bool = Field(False, description="Also return each token as the tokenizer spells it.")


class DetokenizeBody(Body):
    """Token ids to turn back into text."""

    tokens: list[TokenId] = Field(min_length=1, description="Token ids of the model's vocabulary.")
    model: Name = MODEL
