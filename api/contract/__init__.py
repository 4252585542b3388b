"""The request contract, declared once: each body a pydantic model, validated with it and published from it.

The models say what a request may look like; api/validation/embeddings.py and api/validation/rerank.py turn a
validated body into the request the service runs, and api/openapi/ publishes the models' JSON
Schema (api/contract/schema.py) beside what no model can say (responses, headers, statuses).
Where OpenAI's API reference and an older reading disagreed, the reference decided; where it is
silent, the stricter reading: an optional field is left out, never sent as null.
"""
