"""Standard Webhooks signatures (https://www.standardwebhooks.com/), as OpenAI signs its webhooks.

The secret is `whsec_` + base64 of random bytes; the signature is
`v1,` + base64(HMAC-SHA256(secret bytes, "{webhook-id}.{webhook-timestamp}.{body}")).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
# Random bytes in a new secret: 24, as Svix and OpenAI issue theirs (the spec asks for 24 to 64).
SECRET_BYTES = 24


class BadSecret(ValueError):
    """A webhook secret that is not `whsec_` + base64."""


def new_secret() -> str:
    """A fresh `whsec_` secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    """The key an HMAC is made with: the base64 after `whsec_`; BadSecret when it is not that."""
    if not secret.startswith(SECRET_PREFIX):
        raise BadSecret("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except binascii.Error:
        raise BadSecret("a webhook secret is 'whsec_' followed by base64") from None
    if not key:
        raise BadSecret("a webhook secret is 'whsec_' followed by base64 of at least one byte")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one delivery attempt."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers (and the content type) of one attempt."""
    return {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body)}
