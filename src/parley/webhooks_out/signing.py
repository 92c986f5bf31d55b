"""Standard Webhooks signing: secrets, and the three headers every delivery carries.

``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`` where the
key is the base64-decoded part of the ``whsec_`` secret. The timestamp is the attempt's
own (receivers reject ones more than 5 minutes off), so a retry is signed anew.

During a secret rotation's grace period the header carries two signatures, the new
secret's first, separated by a space (``v1,<new> v1,<old>``), as the spec allows:
receivers accept a message when any listed signature verifies with the secret they hold.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random

PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec allows 24 to 64


def new_secret() -> str:
    return PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode()


def signing_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{event_id}.{timestamp}.".encode() + body
    mac = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(
    secret: str, event_id: str, timestamp: int, body: bytes, previous: str | None = None
) -> dict[str, str]:
    """The delivery headers; `previous` (a rotated-out secret still in its grace period)
    adds its signature after the current one's."""
    signatures = [sign(secret, event_id, timestamp, body)]
    if previous is not None:
        signatures.append(sign(previous, event_id, timestamp, body))
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
    }
