"""Whose embedding-cache entries a request reads and writes: a name derived from its API key's identity.

The API puts it in each sync chunk (EmbedChunk.cache_scope); a job chunk's worker derives it from
the job's owner. Both are the same key digest (api/context.py `owner`), hashed once more here, so
the cache Redis holds neither a key nor the identity job records and quotas are filed under.
"""

from __future__ import annotations

import hashlib

# The scope every key shares with EMBED_CACHE_SCOPE=global.
GLOBAL = "global"


def scope_of(owner: str) -> str:
    """The cache scope of the key whose digest (hex) is `owner`."""
    return hashlib.blake2b(b"embedserve-cache-scope\0" + owner.encode(), digest_size=16).hexdigest()
