"""The /v1/rerank body: the shapes Cohere's (v1 and v2) and Jina's rerank clients send.

Documents are strings or `{"text": ...}` objects (other keys, like Cohere's `title`, ignored).
Cohere's `rank_fields`, `max_chunks_per_doc` and `max_tokens_per_doc` are accepted, typed as
Cohere's reference types them, and ignored: documents are scored whole, and one over the model's
maximum is refused unless `truncate` is true.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated

from pydantic import Discriminator, Field, Tag

from api.contract.body import Body
from api.contract.fields import Name, Positive, String, TruncationDirection

# A document's two shapes, by the names they go by in an error's location.
STRING, OBJECT = "a string", "an object"


def document_shape(value: object) -> str | None:
    """Which shape a document is meant as; None when neither (a tagged union: errors name the document)."""
    if isinstance(value, str):
        return STRING
    return OBJECT if isinstance(value, dict) else None


class DocumentObject(Body):
    """A document as Cohere v1 and Jina also send it."""

    text: String


Document = Annotated[Annotated[String, Tag(STRING)] | Annotated[DocumentObject, Tag(OBJECT)],
                     Discriminator(document_shape, custom_error_type="kind",
                                   custom_error_message="Each of 'documents' must be a string or an object with a "
                                                        "string 'text'.")]


@cache
def rerank_body(max_documents: int) -> type[Body]:
    """The POST /v1/rerank body with at most `max_documents` documents."""

    class RerankBody(Body):
        """A query and the documents to score against it."""

        query: Name
        documents: list[Document] = Field(min_length=1, max_length=max_documents)
        model: Name = Field(None, description="Served name or alias of a reranker; optional when one reranker "
                                              "is served.")
        # null is taken here (unlike other optional fields): Jina/Cohere clients built from typed structs
        # (Go's `TopN *int`) send "top_n": null for "all", and both services accept it.
        top_n: Positive | None = Field(None, description="Return only the best N (all by default, or null).")
        return_documents: bool = Field(False, description="Echo each document's text in its result.")
        instruction: String = Field(None, description="Our extension: the instruction for Qwen3-Reranker prompts.")
        truncate: bool = Field(False, description="Our extension: cut documents longer than the model's maximum "
                                                  "instead of refusing them.")
        truncation_direction: TruncationDirection = "right"
        rank_fields: list[String] = Field(None, description="Cohere's; accepted and ignored.")
        max_chunks_per_doc: Positive = Field(None, description="Cohere's; accepted and ignored.")
        max_tokens_per_doc: Positive = Field(None, description="Cohere's; accepted and ignored.")

        def texts(self) -> list[str]:
            """The documents' texts, in order."""
            return [doc if isinstance(doc, str) else doc.text for doc in self.documents]

    return RerankBody
