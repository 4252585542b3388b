"""/tokenize and /detokenize on a worker: the served model's own tokenizer, no forward pass.

Any worker answers, embedding or reranker: the API sends the task to the model's sync queue. The
prompt is tokenized raw, as vLLM's /tokenize does: no query instruction or model prompt is added
(those are /v1/embeddings' business), special tokens unless `add_special_tokens` is false.
"""

from __future__ import annotations

from embedserve.protocol import ChunkResult, TokenizeChunk
from embedserve.token_ids import token_out_of_vocabulary


class TokenizeService:
    """Glue between tokenize tasks and a loaded model's tokenizer (an EmbeddingEngine or a Reranker)."""

    # What the caller is told when tokenizing fails for a reason of the worker's own, in place of its internals.
    FAILURE = "the worker failed to tokenize this input"

    def __init__(self, model):
        self.model = model

    def run(self, chunk: TokenizeChunk) -> ChunkResult:
        """Tokenize or detokenize one request; a refusal or failure is raised (worker/tasks.py replies with it)."""
        if chunk.tokens is not None:
            return ChunkResult(chunk=chunk.chunk, answer={"prompt": self.detokenize(chunk.tokens)})
        ids = self.tokenize(chunk.prompt or "", chunk.add_special_tokens)
        answer = {"count": len(ids), "max_model_len": self.model.max_length, "tokens": ids}
        if chunk.return_token_strs:
            answer["token_strs"] = self.model.tokenizer.convert_ids_to_tokens(ids)
        return ChunkResult(chunk=chunk.chunk, answer=answer)

    def tokenize(self, prompt: str, add_special_tokens: bool) -> list[int]:
        """The prompt's ids, whole (never truncated: the caller wants the real count)."""
        # The lock: a fast tokenizer's truncation is shared state that the model's own calls set.
        with self.model.tokenizer_lock:
            return list(self.model.tokenizer(prompt, add_special_tokens=add_special_tokens, truncation=False,
                                             return_attention_mask=False,
                                             return_token_type_ids=False)["input_ids"])

    def detokenize(self, ids: list[int]) -> str:
        """The text of `ids`; an id outside the vocabulary is refused (the API checks too, when the card knows it)."""
        vocab = self.model.vocab_size
        for i, token in enumerate(ids):
            if not isinstance(token, int) or token < 0 or token >= vocab:
                raise token_out_of_vocabulary(i, token, vocab)
        return self.model.tokenizer.decode(ids)  # decoding reads no truncation state: no lock
