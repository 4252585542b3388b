"""Job and batch events sent to each key's webhook endpoint as Standard Webhooks (docs/webhooks.md).

event (what an event says), signing (its signature), outbox (events waiting in Redis, leased to
one sender at a time), url_safety (where we refuse to send), endpoints (a key's URL and secret),
delivery (the sender thread every API and worker process runs).
"""
