"""Webhook bodies: the API guide's flat shape, documented fields only, stable bytes."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from parley.webhooks_out import payloads

NOW = datetime(2024, 1, 11, 9, 0, tzinfo=UTC)


def test_message_received_has_exactly_the_guides_shape():
    data = {
        "messageId": "msg_124",
        "caseId": "550e8400-e29b-41d4-a716-446655440000",
        "caseNumber": "DEB-2024-12345",
        "messageType": "email",
        "from": "debtor@example.com",
        "subject": "Re: Payment Reminder",
        "hasAttachments": True,
        "timestamp": NOW,
        "internalNote": "never published",
    }
    body = payloads.build("message.received", data, NOW)
    assert body == {
        "event": "message.received",
        "messageId": "msg_124",
        "caseId": "550e8400-e29b-41d4-a716-446655440000",
        "caseNumber": "DEB-2024-12345",
        "messageType": "email",
        "from": "debtor@example.com",
        "subject": "Re: Payment Reminder",
        "hasAttachments": True,
        "timestamp": "2024-01-11T09:00:00Z",
    }
    assert list(orjson.loads(payloads.encode(body))) == list(body)


def test_status_change_carries_error_code_only_when_failed():
    base = {"messageId": "m", "caseId": "c", "channel": "sms", "status": "delivered"}
    ok = payloads.build("message.status_changed", {**base, "previousStatus": "sent"}, NOW)
    assert "errorCode" not in ok and ok["messageType"] == "sms"
    assert ok["timestamp"] == "2024-01-11T09:00:00Z"  # no time given: the emit's
    failed = payloads.build(
        "message.status_changed", {**base, "status": "failed", "errorCode": "30003"}, NOW
    )
    assert failed["errorCode"] == "30003"


def test_encode_restores_documented_order_after_jsonb_reordering():
    body = payloads.build(
        "call.completed",
        {"callId": "k", "caseId": "c", "borrowerId": "b", "status": "no_answer"},
        NOW,
    )
    shuffled = dict(sorted(body.items()))
    assert payloads.encode(shuffled) == payloads.encode(body)
    assert list(orjson.loads(payloads.encode(shuffled)))[:2] == ["event", "callId"]


def test_call_completed_says_who_called_whom():
    data = {
        "callId": "k",
        "caseId": "c",
        "borrowerId": "b",
        "direction": "inbound",
        "from": "+12125550123",
        "to": "+18005550100",
        "status": "awaiting_log",
        "agentId": "internal",
    }
    body = payloads.build("call.completed", data, NOW)
    assert list(body)[:7] == ["event", "callId", "caseId", "borrowerId", "direction", "from", "to"]
    assert (body["from"], body["to"]) == ("+12125550123", "+18005550100")
    assert "agentId" not in body  # not a published field
