"""Pure parts of email two-way: tracking tokens and HTML rewriting, the file-type
judge, attachment MIME parts, and the inbound-parse request reader."""

from __future__ import annotations

import email
import uuid
from email import policy

import pytest

from parley.channels.base import Attachment, OutboundMessage, WebhookRequest
from parley.channels.smtp.mime import render
from parley.channels.smtp.provider import inbound_email_bytes
from parley.domain.channels import Channel
from parley.services import file_types, tracking

KEY = b"k" * 32
MID = uuid.UUID("4f9c2d1e-8a7b-4c6d-9e0f-1a2b3c4d5e6f")
BASE = "https://parley.example.com"


def test_tokens_round_trip_and_refuse_the_other_kind_and_other_keys() -> None:
    click = tracking.make_token(KEY, MID, "https://pay.example.com/x?a=1")
    opened = tracking.make_token(KEY, MID)
    assert tracking.read_token(KEY, click, click=True) == tracking.Tracked(
        MID, "https://pay.example.com/x?a=1"
    )
    assert tracking.read_token(KEY, opened, click=False) == tracking.Tracked(MID, None)
    assert tracking.read_token(KEY, opened, click=True) is None
    assert tracking.read_token(KEY, click, click=False) is None
    assert tracking.read_token(b"other" * 8, click, click=True) is None
    for bad in ("", ".", "a.b", click + "x", click.replace(".", ".A"), "%%.%%"):
        assert tracking.read_token(KEY, bad, click=True) is None


def test_a_signed_non_http_url_is_not_followed() -> None:
    token = tracking.make_token(KEY, MID, "javascript:alert(1)")
    assert tracking.read_token(KEY, token, click=True) is None


def test_instrument_rewrites_links_but_not_unsubscribe_or_mailto_and_adds_a_pixel() -> None:
    html = (
        '<html><body><a href="https://pay.example.com/?a=1&amp;b=2">Pay</a> '
        f"<a href='{BASE}/unsubscribe/tok'>unsubscribe</a> "
        '<a href="mailto:help@acme.test">mail</a></body></html>'
    )
    out = tracking.instrument(html, key=KEY, base_url=BASE, message_id=MID, opens=True, clicks=True)
    assert "https://pay.example.com/?a=1" not in out
    assert f"'{BASE}/unsubscribe/tok'" in out
    assert 'href="mailto:help@acme.test"' in out
    assert out.count("/t/c/") == 1
    assert out.index("/t/o/") < out.index("</body>")
    token = out.split("/t/c/")[1].split('"')[0]
    assert tracking.read_token(KEY, token, click=True) == tracking.Tracked(
        MID, "https://pay.example.com/?a=1&b=2"
    )
    only_opens = tracking.instrument(
        html, key=KEY, base_url=BASE, message_id=MID, opens=True, clicks=False
    )
    assert "/t/c/" not in only_opens and "/t/o/" in only_opens


@pytest.mark.parametrize(
    ("name", "declared", "content", "expected"),
    [
        ("a.pdf", "application/pdf", b"%PDF-1.7 ...", "application/pdf"),
        ("a.pdf", "application/octet-stream", b"%PDF-1.7 ...", "application/pdf"),
        ("scan.JPG", "image/jpg", b"\xff\xd8\xff\xe0rest", "image/jpeg"),
        (
            "sheet.xlsx",
            None,
            b"PK\x03\x04rest",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        ("notes.txt", "text/plain; charset=utf-8", "Grüße\n".encode(), "text/plain"),
    ],
)
def test_accepted_files(name: str, declared: str | None, content: bytes, expected: str) -> None:
    assert file_types.classify(name, declared, content).content_type == expected


@pytest.mark.parametrize(
    ("name", "declared", "content"),
    [
        ("setup.exe", "application/octet-stream", b"MZ\x90\x00"),
        ("invoice.pdf", "application/pdf", b"MZ\x90\x00"),
        ("invoice.pdf", "application/pdf", b"\x7fELF\x02"),
        ("notes.txt", "text/plain", b"#!/bin/sh\n"),
        ("notes.txt", "text/plain", b"bin\x00ary"),
        ("photo.png", "image/png", b"%PDF-1.4"),
        ("page.html", "text/html", b"<script>"),
        ("macro.js", "text/plain", b"alert(1)"),
    ],
)
def test_refused_files(name: str, declared: str, content: bytes) -> None:
    with pytest.raises(file_types.UnsupportedFile):
        file_types.classify(name, declared, content)


def test_attachments_render_as_mixed_parts_with_bcc_kept_out_of_headers() -> None:
    message = OutboundMessage(
        message_id=str(MID),
        channel=Channel.EMAIL,
        to="pat@example.com",
        sender=None,
        subject="Statement",
        body="See attached.",
        html="<p>See attached.</p>",
        cc=("cc@example.com",),
        bcc=("hidden@example.com",),
        attachments=(
            Attachment("Übersicht.pdf", "application/pdf", b"%PDF-1.4 one"),
            Attachment("data.csv", "text/csv", b"a,b\n1,2\n"),
        ),
    )
    rendered = render(
        message, from_address="c@acme.test", from_name=None, message_id_domain="acme.test"
    )
    assert "hidden@example.com" in rendered.envelope_to
    assert b"hidden@example.com" not in rendered.data
    parsed = email.message_from_bytes(rendered.data, policy=policy.default)
    assert parsed.get_content_type() == "multipart/mixed"
    assert parsed["X-Parley-Message-Id"] == f"<{MID}@acme.test>"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>See attached.</p>"
    assert parsed.get_body(("plain",)).get_content().strip() == "See attached."
    files = [
        (a.get_filename(), a.get_content_type(), a.get_content()) for a in parsed.iter_attachments()
    ]
    assert files == [
        ("Übersicht.pdf", "application/pdf", b"%PDF-1.4 one"),
        ("data.csv", "text/csv", "a,b\n1,2\n"),
    ]


def test_inbound_parse_reads_raw_and_form_bodies() -> None:
    raw = b"From: a@example.com\r\nSubject: x\r\n\r\nhello\r\n"
    plain = WebhookRequest("POST", "u", {"content-type": "message/rfc822"}, raw)
    assert inbound_email_bytes(plain) == raw
    stored = WebhookRequest("POST", "u", {}, raw)  # an IMAP receipt being replayed
    assert inbound_email_bytes(stored) == raw
    form = (
        b'--XyZ\r\nContent-Disposition: form-data; name="to"\r\n\r\nc@acme.test\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="email"\r\n\r\n' + raw + b"\r\n--XyZ--\r\n"
    )
    sendgrid = WebhookRequest(
        "POST", "u", {"content-type": "multipart/form-data; boundary=XyZ"}, form
    )
    assert inbound_email_bytes(sendgrid) == raw
    json_body = WebhookRequest("POST", "u", {"content-type": "application/json"}, b"{}")
    assert inbound_email_bytes(json_body) is None
