"""MIME assembly: our hand-built bytes must parse back, with the stdlib `email` parser,
to exactly what was asked for -- headers, bodies, encodings -- and refuse injection."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.channels.base import OutboundMessage
from parley.channels.smtp import mime
from parley.channels.smtp.mime import InvalidMessageError, RenderedEmail, encode_body, render
from parley.domain.channels import Channel


def make(**changes: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "message_id": "4f9c2d1e-8a7b-4c6d-9e0f-1a2b3c4d5e6f",
        "channel": Channel.EMAIL,
        "to": "borrower@example.com",
        "sender": None,
        "subject": "Payment reminder",
        "body": "Hello,\nyour payment is due.\n",
    }
    fields.update(changes)
    return OutboundMessage(**fields)


def rendered(message: OutboundMessage, from_name: str | None = "Lender Billing") -> RenderedEmail:
    return render(
        message,
        from_address="billing@lender.example",
        from_name=from_name,
        message_id_domain="mail.lender.example",
    )


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert not parsed.defects, parsed.defects
    return parsed


def text_of(part: EmailMessage) -> str:
    # The parser keeps the CRLFs of the wire format inside decoded text.
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def assert_wire_format(data: bytes) -> None:
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR"
    for line in data.split(b"\r\n"):
        assert len(line) <= 998


def test_plain_ascii_message_round_trips() -> None:
    email_ = rendered(make())
    parsed = parse(email_.data)
    assert_wire_format(email_.data)
    assert parsed["From"] == "Lender Billing <billing@lender.example>"
    assert parsed["To"] == "borrower@example.com"
    assert parsed["Subject"] == "Payment reminder"
    assert parsed["Message-ID"] == "<4f9c2d1e-8a7b-4c6d-9e0f-1a2b3c4d5e6f@mail.lender.example>"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["Date"] is not None and parsed["Date"].datetime.tzinfo is not None
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed["Content-Transfer-Encoding"] == "7bit"
    assert text_of(parsed) == "Hello,\nyour payment is due.\n"
    assert email_.message_id == parsed["Message-ID"]
    assert email_.envelope_from == "billing@lender.example"
    assert email_.envelope_to == ("borrower@example.com",)
    assert not email_.smtputf8


def test_non_ascii_subject_and_body_round_trip() -> None:
    subject = "Rappel : paiement dû le 1er mars — 120,00 € 💶"
    body = "Bonjour Zoë,\nvotre échéance de 120,00 € arrive.\nMerci — l'équipe\n"
    email_ = rendered(make(subject=subject, body=body))
    parsed = parse(email_.data)
    assert_wire_format(email_.data)
    assert email_.data.isascii(), "non-ASCII text travels encoded"
    assert parsed["Subject"] == subject
    assert text_of(parsed) == body
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"


def test_mostly_non_latin_body_uses_base64() -> None:
    body = "Здравствуйте! Напоминаем о платеже 12 000 ₽ до 1 марта.\n" * 3  # noqa: RUF001 -- deliberately non-Latin text
    parsed = parse(rendered(make(body=body, subject="Напоминание о платеже")).data)  # noqa: RUF001 -- deliberately non-Latin text
    assert parsed["Content-Transfer-Encoding"] == "base64"
    assert text_of(parsed) == body
    assert parsed["Subject"] == "Напоминание о платеже"  # noqa: RUF001 -- deliberately non-Latin text


def test_long_lines_lone_dots_and_trailing_spaces_survive() -> None:
    body = "x" * 2000 + "\n.\n..\n. leading dot\ntrailing spaces   \n\ttab\nend"
    email_ = rendered(make(body=body))
    assert_wire_format(email_.data)
    parsed = parse(email_.data)
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(parsed) == body + "\n"


def test_crlf_and_lone_cr_in_body_become_one_line_ending() -> None:
    parsed = parse(rendered(make(body="one\r\ntwo\rthree\nfour")).data)
    assert text_of(parsed) == "one\ntwo\nthree\nfour\n"


def test_html_alternative_round_trips() -> None:
    html = '<p>Bonjour&nbsp;Zoë, <a href="https://pay.example/x?a=1&amp;b=2">payez ici</a></p>'
    email_ = rendered(make(html=html, body="Bonjour Zoë, payez ici: https://pay.example/x"))
    assert_wire_format(email_.data)
    parsed = parse(email_.data)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert text_of(parts[0]) == "Bonjour Zoë, payez ici: https://pay.example/x\n"
    assert text_of(parts[1]) == html + "\n"
    body = parsed.get_body(preferencelist=("html",))
    assert body is not None and body.get_content_type() == "text/html"


def test_seven_bit_part_containing_the_boundary_is_reencoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mime, "new_boundary", lambda: "=_parley_fixed")
    sneaky = "before\n--=_parley_fixed\nContent-Type: text/evil\n\nafter\n"
    parsed = parse(rendered(make(html=sneaky, body=sneaky)).data)
    parts = list(parsed.iter_parts())
    assert len(parts) == 2
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)
    assert text_of(parts[0]) == sneaky
    assert text_of(parts[1]) == sneaky
    # Without the collision the same parts stay 7bit.
    parsed = parse(rendered(make(html="<p>x</p>", body="x")).data)
    assert all(p["Content-Transfer-Encoding"] == "7bit" for p in parsed.iter_parts())


def test_cc_in_headers_bcc_only_in_envelope() -> None:
    email_ = rendered(
        make(cc=["co-borrower@example.com", "agent@lender.example"], bcc=["audit@lender.example"])
    )
    parsed = parse(email_.data)
    assert parsed["Cc"] == "co-borrower@example.com, agent@lender.example"
    assert parsed["Bcc"] is None
    assert b"audit@lender.example" not in email_.data
    assert email_.envelope_to == (
        "borrower@example.com",
        "co-borrower@example.com",
        "agent@lender.example",
        "audit@lender.example",
    )


def test_extra_headers_list_unsubscribe() -> None:
    headers = {
        "List-Unsubscribe": "<mailto:unsub@lender.example?subject=stop-4f9c>, "
        "<https://lender.example/unsubscribe/4f9c2d1e-8a7b-4c6d-9e0f-1a2b3c4d5e6f?sig=abc123def456>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Reply-To": "collections@lender.example",
        "X-Parley-Case": "Ärger #17",
    }
    email_ = rendered(make(headers=headers))
    assert_wire_format(email_.data)
    parsed = parse(email_.data)
    for name, value in headers.items():
        assert parsed[name] == value
    # Folded at the space between the two URIs (a URI itself cannot be folded).
    assert (
        b"List-Unsubscribe: <mailto:unsub@lender.example?subject=stop-4f9c>,\r\n <https://"
        in email_.data
    )


def test_given_message_id_and_sender_override() -> None:
    email_ = rendered(
        make(rfc822_message_id="abc.123@threads.lender.example", sender='"Doe, Jane" <jd@x.org>')
    )
    parsed = parse(email_.data)
    assert parsed["Message-ID"] == "<abc.123@threads.lender.example>"
    assert email_.message_id == "<abc.123@threads.lender.example>"
    assert parsed["From"].addresses[0].display_name == "Doe, Jane"
    assert parsed["From"].addresses[0].addr_spec == "jd@x.org"
    assert email_.envelope_from == "jd@x.org"


def test_non_ascii_display_name_and_idn_domain() -> None:
    email_ = rendered(make(to="zoë@exämple.com", subject="hi"), from_name="Zoë’s Bank")  # noqa: RUF001 -- deliberately non-Latin text
    parsed = parse(email_.data)
    assert parsed["From"].addresses[0].display_name == "Zoë’s Bank"  # noqa: RUF001 -- deliberately non-Latin text
    assert email_.envelope_to == ("zoë@xn--exmple-cua.com",)
    assert email_.smtputf8, "a non-ASCII local part needs SMTPUTF8"


def test_long_ascii_subject_is_folded_and_unfolds_to_the_original() -> None:
    subject = " ".join(["Reminder:"] + [f"word{i}" for i in range(40)])
    email_ = rendered(make(subject=subject))
    head = email_.data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\n " in head
    assert parse(email_.data)["Subject"] == subject


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "Hi\r\nBcc: victim@example.com"},
        {"subject": "Hi\nX-Evil: 1"},
        {"headers": {"X-Note": "ok\r\nBcc: victim@example.com"}},
        {"headers": {"Bad Name": "x"}},
        {"headers": {"X-Colon:": "x"}},
        {"headers": {"Bcc": "victim@example.com"}},
        {"headers": {"content-type": "text/html"}},
        {"to": "borrower@example.com\r\nBcc: victim@example.com"},
        {"to": "not an address"},
        {"cc": ["ok@example.com", "bad@@"]},
        {"sender": "Jane <jd@x.org>\r\nX-Evil: 1"},
        {"rfc822_message_id": "<a@b>\r\nX-Evil: 1"},
        {"rfc822_message_id": "no-at-sign"},
    ],
)
def test_injection_and_invalid_headers_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessageError):
        rendered(make(**changes))


def test_empty_body() -> None:
    parsed = parse(rendered(make(body="")).data)
    assert text_of(parsed).strip() == ""


def test_encode_body_choices() -> None:
    assert encode_body("plain\n")[0] == "7bit"
    assert encode_body("x" * 999)[0] == "quoted-printable"
    assert encode_body("café\n")[0] == "quoted-printable"
    assert encode_body("日本語のテキスト")[0] == "base64"


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(subject=_text, body=_text, html=st.none() | _text)
def test_any_text_round_trips(subject: str, body: str, html: str | None) -> None:
    if "\r" in subject or "\n" in subject:
        with pytest.raises(InvalidMessageError):
            rendered(make(subject=subject, body=body, html=html))
        return
    email_ = rendered(make(subject=subject, body=body, html=html))
    assert_wire_format(email_.data)
    parsed = parse(email_.data)
    assert parsed["Subject"] == subject

    def normalized(text: str) -> str:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text if text.endswith("\n") else text + "\n"

    if html is None:
        assert text_of(parsed) == normalized(body)
    else:
        plain, rich = parsed.iter_parts()
        assert text_of(plain) == normalized(body)
        assert text_of(rich) == normalized(html)
