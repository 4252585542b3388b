"""Constants that bound the service, each with what it bounds. Settings may override some."""

# Largest number of inputs in one /v1/embeddings request (OpenAI's limit).
MAX_INPUTS_PER_REQUEST = 2048
# Request body limit for /v1/embeddings, bytes (EMBED_MAX_BODY_BYTES).
MAX_BODY_BYTES = 32 * 1024 * 1024
# Seconds a synchronous request waits for its vectors before answering 504 (EMBED_SYNC_TIMEOUT).
SYNC_TIMEOUT_S = 60.0
# Padded tokens in one forward pass (batch rows x longest row) on a GPU (EMBED_MAX_BATCH_TOKENS).
MAX_BATCH_TOKENS = 16384
# ...and on a CPU, where small batches are faster per text: their activations stay in cache.
# MiniLM-L6 on a 2-core box (1 thread, CPU time, 256 mixed texts): 130 texts/s at 512 tokens,
# 123 at 1024, 111 at 2048, 102 at 4096, 79 at 8192, 62 at 16384. 1024 leaves the two intra-op
# threads enough work per matmul.
MAX_BATCH_TOKENS_CPU = 1024
# Most rows in one forward pass, whatever their length.
MAX_BATCH_ROWS = 256
# A sync request is cut into chunks of at least this many inputs, so tiny requests stay one task.
MIN_SYNC_CHUNK = 16
# ...and at most this many, so a 2048-input request spreads over workers and threads.
MAX_SYNC_CHUNK = 256
# Seconds between worker heartbeats, and how long a heartbeat keeps a worker "live".
HEARTBEAT_INTERVAL_S = 2.0
HEARTBEAT_TTL_S = 10.0
# How long a model stays "known" (503, not 404) after its last worker vanished.
KNOWN_MODEL_TTL_S = 24 * 3600
# Seconds the API trusts its cached view of the worker registry.
REGISTRY_CACHE_S = 1.0
# Seconds a reply list lives after a worker pushed to it (the caller may have gone).
REPLY_TTL_S = 120
# Celery task threads per worker process: each waits on the batcher, so they are cheap. It bounds
# how many tasks a worker holds at once, so how many rows the batcher can sort and coalesce:
# above the usual number of concurrent clients (32 one-text clients: 39 -> 45 texts/s at 48).
WORKER_CONCURRENCY = 48
# Seconds the batcher waits for more work to fill a batch when it has some but not a full batch.
BATCH_WAIT_S = 0.002
# Redis visibility timeout: an unacknowledged task is redelivered after this (EMBED_VISIBILITY_TIMEOUT).
VISIBILITY_TIMEOUT_S = 3600
# Hard time limit of one task; must stay below the visibility timeout (EMBED_TASK_TIME_LIMIT).
TASK_TIME_LIMIT_S = 600
# Default instruction for Qwen3-style query embeddings (from the Qwen3-Embedding model card).
DEFAULT_QUERY_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
