"""The embedding cache (EMBED_CACHE_URL): vectors already computed, kept in a Redis of their own.

`fingerprint` names the loaded model (its files, not just its served name), `digests` names one
input with every option that changes its vector, `vector_cache` reads and writes entries and turns a
cache that is down, slow or full into "compute it". worker/embedding_service.py uses it for sync
requests, job chunks and batch lines alike, just before rows go to the batcher.
"""
