"""Code shared by the API and the workers.

At the top: settings and defaults, errors, logs, the Redis client and key names, the wire protocol
and Celery plumbing (celery_app, publish, queues), vector types, token ids, API keys, ids.
By subject: `jobs/` (records, Lua transitions, chunks, data, scheduler, results, sweeper, store),
`fleet/` (catalogue, registry, liveness, forward stats, quantization ranges), `cli/` (the
`embedserve` command).

Nothing in this package may import torch, transformers or Flask: both sides import it.
"""
