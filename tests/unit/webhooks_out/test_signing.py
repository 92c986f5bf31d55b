"""Our Standard Webhooks signatures verify with the official `standardwebhooks` package."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from parley.webhooks_out import payloads, signing


def _signed(secret: str, body: bytes, event_id: str = "evt_1", at: int | None = None):
    return signing.headers(secret, event_id, int(time.time()) if at is None else at, body)


def test_new_secret_is_whsec_with_32_random_bytes():
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing.new_secret() != secret


def test_signature_verifies_with_the_official_library():
    secret = signing.new_secret()
    body = payloads.encode(
        {"event": "message.received", "messageId": "m1", "subject": "Re: Zahlung ✓"}
    )
    headers = _signed(secret, body)
    assert headers["webhook-signature"].startswith("v1,")
    verified = Webhook(secret).verify(body, headers)
    assert verified["event"] == "message.received"
    assert verified["subject"] == "Re: Zahlung ✓"


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_any_change_breaks_verification(tamper):
    secret = signing.new_secret()
    body = b'{"event":"call.completed","callId":"c1"}'
    headers = _signed(secret, body)
    if tamper == "body":
        body = body.replace(b"c1", b"c2")
    elif tamper == "id":
        headers["webhook-id"] = "evt_2"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
    else:
        secret = signing.new_secret()
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_a_stale_timestamp_is_rejected_by_receivers():
    """Why each attempt is signed with its own time, not the event's."""
    secret = signing.new_secret()
    body = b"{}"
    headers = _signed(secret, body, at=int(time.time()) - 600)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_during_a_rotation_both_signatures_verify_new_first():
    new, old = signing.new_secret(), signing.new_secret()
    body = b'{"event":"webhook.test"}'
    headers = signing.headers(new, "evt_1", int(time.time()), body, previous=old)
    first, second = headers["webhook-signature"].split(" ")
    assert first == signing.sign(new, "evt_1", int(headers["webhook-timestamp"]), body)
    assert second == signing.sign(old, "evt_1", int(headers["webhook-timestamp"]), body)
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == {"event": "webhook.test"}
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)


def test_without_a_previous_secret_there_is_one_signature():
    secret = signing.new_secret()
    headers = _signed(secret, b"{}")
    assert " " not in headers["webhook-signature"]
