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
# ...and on a CPU with the packed forward (worker/packed/encoder.py), where a budget counts real tokens and
# no padding grows with the batch. A 2,000-text job on the 2-core box: 1024: 68-70 texts/s (3 runs),
# 2048: 81, 4096: 77-78 (scripts in docs/benchmarks.md).
MAX_BATCH_TOKENS_CPU_PACKED = 2048
# Most rows in one forward pass, whatever their length.
MAX_BATCH_ROWS = 256
# A sync request is cut into chunks of at least this many inputs, so tiny requests stay one task.
MIN_SYNC_CHUNK = 16
# ...and at most this many, so a 2048-input request spreads over workers and threads.
MAX_SYNC_CHUNK = 256
# Seconds between worker heartbeats.
HEARTBEAT_INTERVAL_S = 2.0
# Seconds without a heartbeat after which a worker is dead (EMBED_WORKER_DEAD_AFTER): it stops
# counting for routing, and whoever notices hands its work to another worker.
WORKER_DEAD_AFTER_S = 15.0
# Seconds a model stays in the catalogue with no live worker before it is forgotten (EMBED_CATALOGUE_TTL).
CATALOGUE_TTL_S = 7 * 24 * 3600
# Seconds a sync request for a model with no live worker waits for one, then 503 (EMBED_COLD_START_TIMEOUT):
# under the 60 s idle timeout of common load balancers.
COLD_START_TIMEOUT_S = 50.0
# Seconds a stopping worker finishes what it holds before handing the rest back (EMBED_DRAIN_TIMEOUT):
# below compose's stop_grace_period (30 s) and a spot machine's notice.
DRAIN_TIMEOUT_S = 25.0
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
# Instructions for Qwen3-style models by Cohere input_type (/v2/embed), when the model names no prompt
# for it: generic forms of the Qwen3-Embedding evaluation's classification and clustering tasks.
TASK_INSTRUCTIONS = {"classification": "Classify the given text by its topic and intent",
                     "clustering": "Identify the topic or theme of the given text"}
# Largest number of documents in one /v1/rerank request (Cohere's limit).
MAX_RERANK_DOCUMENTS = 1000
# Longest (query, document) prompt a reranker scores, tokens; the Qwen3-Reranker model card uses 8192.
RERANK_MAX_TOKENS = 8192
# Default instruction for Qwen3-Reranker (from its model card).
DEFAULT_RERANK_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
# Interactive-queue depth (messages = chunks) above which sync requests get 503 at once (EMBED_MAX_QUEUE).
MAX_QUEUE = 1000
# Seconds a client is told to wait when the interactive queue is over EMBED_MAX_QUEUE.
QUEUE_FULL_RETRY_AFTER_S = 2
# Seconds the API trusts a cached managed-key lookup: a revoked key works at most this long after.
MANAGED_KEY_CACHE_S = 1.0
# Most cached key lookups per API process (the cache is cleared when it reaches this).
MANAGED_KEY_CACHE_ENTRIES = 10000
# Histogram bucket bounds for rows and padded tokens per forward pass (workers count, /metrics shows).
BATCH_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_TOKENS_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
# Seconds between a worker's pushes of its forward-pass statistics to Redis.
BATCH_STATS_FLUSH_S = 2.0

# --- bulk jobs, files and batches -----------------------------------------------------------
# Most inputs in one job (EMBED_MAX_JOB_INPUTS).
MAX_JOB_INPUTS = 1_000_000
# Body limit for POST /v1/jobs and /v1/embeddings with `Prefer: respond-async`, bytes (EMBED_MAX_JOB_BODY_BYTES).
MAX_JOB_BODY_BYTES = 512 * 1024 * 1024
# Largest uploaded file, bytes (EMBED_MAX_FILE_BYTES).
MAX_FILE_BYTES = 200 * 1024 * 1024
# Seconds a job's inputs and results live after submission (EMBED_JOB_TTL).
JOB_TTL_S = 24 * 3600
# Seconds a job's record outlives its data, so it can answer "expired" (EMBED_JOB_RECORD_GRACE).
JOB_RECORD_GRACE_S = 24 * 3600
# Inputs of one key's queued and running jobs and batches (EMBED_MAX_QUEUED_INPUTS_PER_KEY; 0 = unlimited).
MAX_QUEUED_INPUTS_PER_KEY = 2_000_000
# Seconds an uploaded file lives (EMBED_FILE_TTL); OpenAI keeps batch files 30 days.
FILE_TTL_S = 30 * 24 * 3600
# Runs of one chunk (tries, counting ones that killed their worker) before its items fail (EMBED_MAX_ATTEMPTS).
MAX_ATTEMPTS = 3
# A job chunk holds at most this many inputs ...
JOB_CHUNK_INPUTS = 32
# ... and at most this many characters (token ids count 4 each): a fraction of a second of CPU
# work for a small model, so chunks finish (and free a task slot for interactive work) often.
JOB_CHUNK_CHARS = 8 * 1024
# A big job's chunks on a fast model grow up to this many times those budgets (api/bulk/chunking.py):
# each chunk costs a claim, a finish, an input object and a part object whatever its size, and on
# a fast model those costs, paid 31,250 times for a million 32-input chunks, outweighed the
# forward itself (docs/benchmarks.md, "Bulk at scale") ...
JOB_CHUNK_GROWTH = 32
# ... as long as the job keeps at least this many chunks (to spread over every slot of many workers) ...
JOB_CHUNK_TARGET = 256
# ... and a chunk stays within this many seconds of one worker's forward at the model's measured
# bulk rate, so the work a crash redoes and the wait a small job has for a free slot stay short on
# a slow CPU as on a fast GPU. A model with no measured rate yet gets the small budgets.
JOB_CHUNK_SECONDS = 0.5
# Padded tokens in a forward pass of bulk rows only, on CPU (EMBED_BULK_BATCH_TOKENS; on CUDA
# the default is EMBED_MAX_BATCH_TOKENS): an interactive row waits for at most one such pass.
CPU_BULK_BATCH_TOKENS = 256
# Seconds after the last sync request during which bulk-only passes stay small (the bulk budget);
# a job with no sync traffic about runs full-size passes.
INTERACTIVE_RECENT_S = 2.0
# Least share of a worker's recent forward time that waiting job rows get under sync load
# (EMBED_BULK_MIN_SHARE; 0 = sync always first). Sync traffic that alone fills the worker would
# otherwise hold a job's chunks until their deadline passes and they fail (worker/forward_share.py).
BULK_MIN_SHARE = 0.1
# Job chunks one worker holds at once (EMBED_BULK_SLOTS): each has a consumer thread with its own
# connection and prefetch 1. 8 keeps the forward thread fed while finished chunks are written back
# and new ones read: a 2,000-text job on the 2-core box ran 75-87 texts/s with 4, 91-95 with 8
# (packed forward, arrival-order batches), and sync p95 during a job stayed 1.3x idle.
BULK_SLOTS = 8
# Most objects one list call returns, and the default.
LIST_LIMIT_MAX = 100
LIST_LIMIT_DEFAULT = 20
# Seconds a client is told to wait before polling an unfinished job's result again.
JOB_RETRY_AFTER_S = 2
# Item errors kept on a job record to show in `errors` (all are in the result).
JOB_ERROR_SAMPLE = 10
# Bytes read from Redis or an upload per step when streaming a file.
FILE_BLOCK_BYTES = 4 * 1024 * 1024
# The only completion window OpenAI's batch API accepts, and what it means in seconds.
BATCH_COMPLETION_WINDOW = "24h"
BATCH_WINDOW_S = 24 * 3600
# Seconds between kombu's sweeps that hand unacknowledged messages of dead workers back.
UNACKED_RESTORE_INTERVAL_S = 10
# Seconds before the unacked-restore sweep's Redis mutex expires if its holder died (kombu: 300).
UNACKED_MUTEX_EXPIRE_S = 30

# Long inputs (`long_input` mean / windows): the most windows one input may be split into (EMBED_MAX_WINDOWS),
# and the tokens two neighbouring windows share when a request does not say (`window_overlap`).
MAX_WINDOWS = 64
WINDOW_OVERLAP = 32
# The largest window_overlap accepted for a model whose maximum length is not known yet (else half of it).
MAX_WINDOW_OVERLAP = 65_536

# `embedserve embed`: the server it talks to when neither --url nor EMBED_URL is given.
EMBED_CLI_URL = "http://127.0.0.1:8000"
# ...seconds between job polls: the first poll comes fast, then the interval grows x1.5 up to the max.
EMBED_CLI_POLL_MIN_S = 0.2
EMBED_CLI_POLL_MAX_S = 2.0
# ...seconds one HTTP call (or one read of the streamed result) may stall before it fails.
EMBED_CLI_HTTP_TIMEOUT_S = 300
# ...bytes read from the result stream at a time.
EMBED_CLI_READ_BYTES = 1 << 20
# Webhooks (embedserve/events/): seconds between a sender thread's looks for due events.
WEBHOOK_POLL_S = 1.0
# ...the longest wait between two attempts at one event, however many failed (backoff doubles up to it).
WEBHOOK_MAX_DELAY_S = 3600.0
# ...events one sender thread sends per look, so its step ends and the next look comes round.
WEBHOOK_EVENTS_PER_STEP = 50
# ...seconds an undelivered event's record lives in Redis at most: above the longest retry window
# (EMBED_WEBHOOK_RETRY_HOURS is at most 720), so it only bounds a record no sender will ever see.
WEBHOOK_EVENT_TTL_S = 31 * 24 * 3600
# ...bytes of a receiver's answer read (its body is not used; reading a little lets the connection close cleanly).
WEBHOOK_RESPONSE_BYTES = 4096

# The embedding cache (EMBED_CACHE_URL, worker/cache/): seconds an entry lives. Entries carry a TTL so
# that volatile-lru/lfu (which evict only keys with one) can evict them too; LRU drops them sooner when full.
CACHE_TTL_S = 30 * 24 * 3600
# ...seconds one cache call (connect, MGET, SET pipeline) may take: a slow cache costs a request this much, once.
CACHE_SOCKET_TIMEOUT_S = 0.25
# ...seconds the cache is left alone after a failed call (down, timing out, out of memory): requests compute meanwhile.
CACHE_RETRY_AFTER_S = 5.0
