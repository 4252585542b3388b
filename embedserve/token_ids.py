"""Token-id input (OpenAI's arrays of ints): the errors the API and the workers refuse it with.

Clients rarely mean to send token ids. LangChain's `OpenAIEmbeddings` does by default: it cuts
texts with OpenAI's tiktoken and sends those ids, unless created with
`check_embedding_ctx_length=False`. Ids from another tokenizer mean other text to this model: past
its vocabulary they are refused, inside it they would embed the wrong words, and no server can tell.
So every refusal of token ids names that switch, and EMBED_ACCEPT_TOKEN_IDS=false refuses them all.
"""

from __future__ import annotations

from embedserve.errors import InvalidRequest

# The code of token-id input refused by an API started with EMBED_ACCEPT_TOKEN_IDS=false.
NOT_ACCEPTED = "token_ids_not_accepted"
LANGCHAIN_HINT = ("LangChain's OpenAIEmbeddings sends OpenAI's (tiktoken) token ids unless created with "
                  "check_embedding_ctx_length=False; set it to send text.")


def out_of_vocabulary(index: int, token_id: int, vocab_size: int) -> InvalidRequest:
    """The 400 for a token id the model does not have (the API checks the card, a worker its tokenizer)."""
    return InvalidRequest(f"input[{index}] has token id {token_id}, outside this model's vocabulary "
                          f"(0..{vocab_size - 1}); token ids must come from this model's tokenizer. {LANGCHAIN_HINT}",
                          param="input", code="invalid_token_id")


def token_out_of_vocabulary(index: int, token_id: int, vocab_size: int) -> InvalidRequest:
    """/detokenize's 400 for an id the model does not have (the API checks the card, a worker its tokenizer)."""
    return InvalidRequest(f"tokens[{index}] is {token_id}, outside this model's vocabulary (0..{vocab_size - 1}).",
                          param="tokens", code="invalid_token_id")


def not_accepted() -> InvalidRequest:
    """The 400 for any token-id input while EMBED_ACCEPT_TOKEN_IDS is false."""
    return InvalidRequest(f"This server does not accept token ids as input (EMBED_ACCEPT_TOKEN_IDS=false); send "
                          f"text. {LANGCHAIN_HINT}", param="input", code=NOT_ACCEPTED)
