"""The email parser over captured-style messages (tests/fixtures/providers/smtp/*.eml)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from parley.channels.base import DeliveryEvent, InboundMessage
from parley.channels.smtp.inbound import UnparseableEmail, parse_email
from parley.domain.status import EventType

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "providers" / "smtp"
OURS = "<6f1c2b1e-0000-4000-8000-{}@acme.test>"


def _one(name: str) -> InboundMessage:
    items = parse_email((FIXTURES / name).read_bytes())
    assert len(items) == 1
    item = items[0]
    assert isinstance(item, InboundMessage)
    return item


def test_plain_reply_keeps_sender_threading_and_body() -> None:
    item = _one("plain_reply.eml")
    assert item.kind == "email"
    assert item.sender == "pat.doe@example.com"
    assert item.recipient == "collections@acme.test"
    assert list(item.cc) == ["spouse@example.com"]
    assert item.subject == "Re: Your account"
    assert item.provider_message_id == "<CAB123.reply@mail.example.com>"
    assert item.in_reply_to == OURS.format("000000000001")
    assert list(item.references) == [OURS.format("000000000001")]
    assert item.body.startswith("I can pay $200 on Friday.")
    assert "> Dear Pat" in item.body  # the quote stays; the inbox strips it to classify
    assert item.occurred_at == datetime(2026, 11, 10, 14, 15, tzinfo=UTC)
    assert item.media == ()


def test_html_only_message_gets_a_text_body() -> None:
    item = _one("html_only.eml")
    assert item.body == "Hello,\n\nI would like a payment plan & a call back.\n\nThanks\nPat"
    assert "color" not in item.body
    assert item.sender == "pat.doe@example.com"


def test_attachments_come_as_bytes_with_safe_names() -> None:
    item = _one("attachments.eml")
    assert item.body.strip() == "Receipt attached."
    assert [(m.filename, m.content_type) for m in item.media] == [
        ("receipt.pdf", "application/pdf"),
        ("photo.png", "image/png"),
    ]
    pdf = item.media[0]
    assert pdf.content is not None and pdf.content.startswith(b"%PDF-1.4")
    assert pdf.size == len(pdf.content)
    assert item.raw["attachments"][0]["fileName"] == "receipt.pdf"


def test_dsn_bounce_names_our_message_with_status_and_diagnostic() -> None:
    items = parse_email((FIXTURES / "dsn_bounce.eml").read_bytes())
    assert len(items) == 1
    event = items[0]
    assert isinstance(event, DeliveryEvent)
    assert event.event_type is EventType.BOUNCED
    assert event.provider_message_id == OURS.format("000000000002")
    assert event.reason == (
        "5.1.1 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"
    )
    assert event.error_code == "5.1.1"
    assert event.raw["finalRecipient"] == "nobody@example.com"
    assert event.occurred_at == datetime(2026, 11, 10, 10, 0, 1, tzinfo=UTC)
    # Stable across parses: a re-delivered DSN is one event.
    again = parse_email((FIXTURES / "dsn_bounce.eml").read_bytes())
    assert [e.provider_event_id for e in again] == [event.provider_event_id]  # type: ignore[union-attr]


def test_delayed_dsn_is_a_deferral_found_through_the_returned_message() -> None:
    (event,) = parse_email((FIXTURES / "dsn_delayed.eml").read_bytes())
    assert isinstance(event, DeliveryEvent)
    assert event.event_type is EventType.DEFERRED
    assert event.provider_message_id == OURS.format("000000000003")
    assert event.reason is not None and event.reason.startswith("4.4.1 connect to mx.example.net")
    assert event.occurred_at == datetime(2026, 11, 10, 13, 59, tzinfo=UTC)


def test_auto_reply_is_flagged_as_such() -> None:
    item = _one("auto_reply.eml")
    assert item.kind == "auto_reply"
    assert item.raw["autoReply"] == "Auto-Submitted: auto-replied"
    assert item.in_reply_to == OURS.format("000000000001")


def test_plain_replies_are_not_auto_replies() -> None:
    for name in ("plain_reply.eml", "html_only.eml", "attachments.eml", "references_chain.eml"):
        assert _one(name).kind == "email", name


def test_references_chain_lists_every_id_in_order() -> None:
    item = _one("references_chain.eml")
    assert item.in_reply_to == "<chain-2@mail.example.com>"
    assert list(item.references) == [OURS.format("000000000001"), "<chain-2@mail.example.com>"]


@pytest.mark.parametrize(
    "raw", [b"", b"   \r\n", b"no headers here at all", b"[1, 2, 3]", b'{"status": "delivered"}']
)
def test_not_an_email_is_refused(raw: bytes) -> None:
    with pytest.raises(UnparseableEmail):
        parse_email(raw)


def test_missing_message_id_gets_a_stable_synthetic_one() -> None:
    raw = b"From: a@example.com\r\nTo: b@acme.test\r\nSubject: hi\r\n\r\nhello\r\n"
    first, again = _parse_one(raw), _parse_one(raw)
    assert first.provider_message_id == again.provider_message_id
    assert first.provider_message_id.endswith("@parley.invalid>")


def _parse_one(raw: bytes) -> InboundMessage:
    (item,) = parse_email(raw)
    assert isinstance(item, InboundMessage)
    return item
