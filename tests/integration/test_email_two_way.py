"""Email both ways through the API: CC/BCC and attachments on the wire (aiosmtpd sink),
open and click tracking over real HTTP, the inbound-parse webhook (signed, unsigned,
replayed), replies threaded to our messages, attachments kept as case documents, and
auto-replies that never count as the borrower's opt-out."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import re
from email import policy
from email.utils import formatdate
from typing import Any

import httpx

from parley.domain.channels import Channel
from parley.inbox import receipts
from parley.peers.smtp_sink import SmtpSink
from tests.support import factories
from tests.support.live import drain, live_api

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n" + b"x" * 5000
SECRET = "inbound-secret-for-tests"


async def _smtp_account(container: Any, org_id: Any, port: int, **config: Any) -> Any:
    return await factories.account(
        container,
        org_id,
        "smtp",
        Channel.EMAIL,
        config={
            "host": "127.0.0.1",
            "port": port,
            "from_address": "collections@acme.test",
            **config,
        },
        secrets_={"inbound_secret": SECRET},
    )


async def _rows(container: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


# -- outbound: cc, bcc, attachments ------------------------------------------------------


async def test_cc_bcc_and_attachment_reach_the_smtp_server(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    up = await tenant.client.post(
        f"/api/cases/{data['case_id']}/documents",
        files={"file": ("statement.pdf", PDF, "application/pdf")},
        data={"documentType": "invoice"},
    )
    assert up.status_code == 201, up.text
    document_id = up.json()["documentId"]
    async with SmtpSink() as sink:
        await _smtp_account(container, tenant.organization_id, sink.port)
        r = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={
                "messageType": "email",
                "subject": "Your statement",
                "body": "Please find your statement attached.",
                "cc": ["creditor@example.com"],
                "bcc": ["Audit@Example.com"],
                "attachments": [document_id],
            },
        )
        assert r.status_code == 201, r.text
        sent = r.json()
        assert sent["cc"] == ["creditor@example.com"]
        assert sent["bcc"] == ["Audit@example.com"]  # the domain normalized, not the local part
        assert sent["hasAttachments"] is True
        assert sent["attachments"] == [document_id]
        await drain(container)
        (received,) = sink.messages
    assert set(received.rcpt_tos) == {
        "pat.doe@example.com",
        "creditor@example.com",
        "Audit@example.com",
    }
    assert received.data is not None
    head = received.data.split(b"\r\n\r\n", 1)[0].lower()
    assert b"audit@example.com" not in head and b"bcc" not in head
    parsed = email.message_from_bytes(received.data, policy=policy.default)
    assert parsed["Cc"] == "creditor@example.com"
    assert parsed["X-Parley-Message-Id"] == parsed["Message-ID"]
    assert "attached" in parsed.get_body(("plain",)).get_content()
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_filename() == "statement.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == PDF
    shown = await tenant.client.get(f"/api/messages/{sent['messageId']}")
    assert shown.json()["hasAttachments"] is True
    listing = await tenant.client.get(f"/api/cases/{data['case_id']}/messages")
    assert [m["hasAttachments"] for m in listing.json()["messages"]] == [True]


async def test_bad_copies_and_foreign_attachments_are_422(
    tenant: Any, other_tenant: Any, container: Any
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    theirs = await factories.borrower_with_case(container, other_tenant.organization_id)
    up = await other_tenant.client.post(
        f"/api/cases/{theirs['case_id']}/documents",
        files={"file": ("x.pdf", PDF, "application/pdf")},
        data={"documentType": "other"},
    )
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    base = {"messageType": "email", "subject": "Hi", "body": "Hello"}
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages", json={**base, "bcc": ["not an address"]}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "bcc.0"
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages",
        json={**base, "attachments": [up.json()["documentId"]]},
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "attachments.0"
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages",
        json={"messageType": "sms", "body": "Hi", "attachments": [up.json()["documentId"]]},
    )
    assert r.status_code == 422
    assert await _rows(container, "SELECT id FROM messages") == []


# -- tracking ----------------------------------------------------------------------------


async def test_open_and_click_tracking_over_http(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    async with live_api(container) as base, SmtpSink() as sink:
        await _smtp_account(
            container, tenant.organization_id, sink.port, track_opens=True, track_clicks=True
        )
        r = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={
                "messageType": "email",
                "subject": "Pay online",
                "body": "Pay at https://pay.example.com/inv/1",
                "htmlBody": '<html><body><p>Pay <a href="https://pay.example.com/inv/1?a=1&amp;b=2">'
                "online</a>.</p></body></html>",
            },
        )
        assert r.status_code == 201, r.text
        message = r.json()
        assert "/t/c/" not in message["htmlBody"]  # the stored message is what was written
        await drain(container)
        (received,) = sink.messages
        parsed = email.message_from_bytes(received.data or b"", policy=policy.default)
        html = parsed.get_body(("html",)).get_content()
        (pixel,) = re.findall(r'<img src="([^"]+/t/o/[^"]+\.gif)"', html)
        clicks = re.findall(r'href="([^"]+/t/c/[^"]+)"', html)
        assert len(clicks) == 1
        assert re.search(r'href="[^"]+/unsubscribe/', html), "the unsubscribe link is untouched"

        async with httpx.AsyncClient(base_url=base) as browser:
            seen = await browser.get(pixel)
            assert seen.status_code == 200
            assert seen.headers["content-type"] == "image/gif"
            assert seen.content.startswith(b"GIF89a")
            assert await _status(tenant, message["messageId"]) == "opened"
            again = await browser.get(pixel)  # a second load is absorbed
            assert again.status_code == 200

            hop = await browser.get(clicks[0].replace("&amp;", "&"))
            assert hop.status_code == 302
            assert hop.headers["location"] == "https://pay.example.com/inv/1?a=1&b=2"
            assert await _status(tenant, message["messageId"]) == "clicked"

            # A forged or altered token redirects nowhere.
            token = clicks[0].rsplit("/", 1)[1]
            body, mac = token.split(".")
            evil = (
                base64.urlsafe_b64encode(
                    base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))[:17]
                    + b"https://evil.example/"
                )
                .decode()
                .rstrip("=")
            )
            for bad in (f"{evil}.{mac}", token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "x"):
                refused = await browser.get(f"/t/c/{bad}")
                assert refused.status_code == 404
                assert "location" not in refused.headers
            assert (await browser.get("/t/o/nonsense.gif")).status_code == 404
    events = await _rows(
        container,
        "SELECT event_type, status_after, source FROM message_events WHERE message_id = %s "
        "AND source = 'tracking' ORDER BY id",
        message["messageId"],
    )
    assert events == [("opened", "opened", "tracking"), ("clicked", "clicked", "tracking")]


async def test_tracking_is_off_by_default(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    async with SmtpSink() as sink:
        await _smtp_account(container, tenant.organization_id, sink.port)
        await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={
                "messageType": "email",
                "subject": "Hi",
                "body": "See https://pay.example.com",
                "htmlBody": '<p><a href="https://pay.example.com">Pay</a></p>',
            },
        )
        await drain(container)
        (received,) = sink.messages
    assert b"/t/o/" not in (received.data or b"")
    assert b"/t/c/" not in (received.data or b"")
    assert b'href="https://pay.example.com"' in (received.data or b"")


async def _status(tenant: Any, message_id: str) -> str:
    r = await tenant.client.get(f"/api/messages/{message_id}")
    return str(r.json()["status"])


# -- inbound-parse webhook ----------------------------------------------------------------


def _reply(
    in_reply_to: str, *, body: str, extra: str = "", attachment: bytes | None = None
) -> bytes:
    head = (
        "From: Pat Doe <pat.doe@example.com>\r\nTo: collections@acme.test\r\n"
        f"Subject: Re: Your account\r\nDate: {formatdate(usegmt=True)}\r\n"
        f"Message-ID: <{hashlib.sha1(body.encode()).hexdigest()}@mail.example.com>\r\n"
        f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n{extra}MIME-Version: 1.0\r\n"
    )
    if attachment is None:
        return (head + "Content-Type: text/plain\r\n\r\n" + body + "\r\n").encode()
    encoded = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
    return (
        head
        + 'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
        + f"--m\r\nContent-Type: text/plain\r\n\r\n{body}\r\n"
        + "--m\r\nContent-Type: application/pdf\r\n"
        + 'Content-Disposition: attachment; filename="receipt.pdf"\r\n'
        + f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}--m\r\n"
        + "Content-Type: application/octet-stream\r\n"
        + 'Content-Disposition: attachment; filename="virus.exe"\r\n'
        + "Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--m--\r\n"
    ).encode()


def _signed(raw: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return {"Content-Type": "message/rfc822", "X-Parley-Signature": f"sha256={digest}"}


async def _outbound(tenant: Any, container: Any, data: dict[str, Any], port: int) -> dict[str, Any]:
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages",
        json={"messageType": "email", "subject": "Your account", "body": "Hello Pat."},
    )
    assert r.status_code == 201, r.text
    await drain(container)
    rows = await _rows(
        container,
        "SELECT rfc822_message_id, thread_id::text FROM messages WHERE id = %s",
        r.json()["messageId"],
    )
    return {**r.json(), "rfc822": rows[0][0], "threadId": rows[0][1]}


async def test_inbound_parse_webhook_threads_the_reply_with_its_attachment(
    tenant: Any, container: Any
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    async with SmtpSink() as sink:
        account_id = await _smtp_account(container, tenant.organization_id, sink.port)
        sent = await _outbound(tenant, container, data, sink.port)
    raw = _reply(sent["rfc822"], body="Here is my receipt.", attachment=PDF)
    url = f"/webhooks/smtp/{account_id}"

    unsigned = await tenant.client.post(
        url, content=raw, headers={"Content-Type": "message/rfc822"}
    )
    assert unsigned.status_code == 403
    forged = await tenant.client.post(url, content=raw + b" ", headers=_signed(raw))
    assert forged.status_code == 403
    assert await _rows(container, "SELECT id FROM webhook_receipts") == []

    ok = await tenant.client.post(url, content=raw, headers=_signed(raw))
    assert ok.status_code == 200, ok.text
    again = await tenant.client.post(url, content=raw, headers=_signed(raw))
    assert again.json()["duplicate"] is True
    await drain(container)

    listing = await tenant.client.get(f"/api/cases/{data['case_id']}/messages?direction=inbound")
    (reply,) = listing.json()["messages"]
    assert reply["threadId"] == sent["threadId"]
    assert reply["body"].startswith("Here is my receipt.")
    assert reply["hasAttachments"] is True
    assert reply["flags"] == ["attachment_rejected"]  # virus.exe stayed out
    docs = (await tenant.client.get(f"/api/cases/{data['case_id']}/documents")).json()["documents"]
    assert [(d["fileName"], d["documentType"], d["messageId"]) for d in docs] == [
        ("receipt.pdf", "correspondence", reply["messageId"])
    ]
    download = await tenant.client.get(f"/api/documents/{docs[0]['documentId']}/download")
    assert download.content == PDF

    # Replaying the stored receipt records nothing twice.
    await receipts.replay(container)
    await drain(container)
    assert len(await _rows(container, "SELECT id FROM messages WHERE direction = 'inbound'")) == 1
    assert len(await _rows(container, "SELECT id FROM documents")) == 1


async def test_basic_auth_and_sendgrid_style_form_are_accepted(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    async with SmtpSink() as sink:
        account_id = await _smtp_account(container, tenant.organization_id, sink.port)
        sent = await _outbound(tenant, container, data, sink.port)
    raw = _reply(sent["rfc822"], body="Can I pay next week?")
    wrong = await tenant.client.post(
        f"/webhooks/smtp/{account_id}",
        files={"email": ("email", raw, "text/plain")},
        data={"to": "collections@acme.test"},
        auth=("parse", "not-the-secret"),
    )
    assert wrong.status_code == 403
    r = await tenant.client.post(
        f"/webhooks/smtp/{account_id}",
        files={"email": ("email", raw, "text/plain")},
        data={"to": "collections@acme.test"},
        auth=("parse", SECRET),
    )
    assert r.status_code == 200, r.text
    await drain(container)
    listing = await tenant.client.get(f"/api/cases/{data['case_id']}/messages?direction=inbound")
    assert [m["body"].strip() for m in listing.json()["messages"]] == ["Can I pay next week?"]


async def test_auto_reply_is_recorded_but_does_not_opt_out(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    async with SmtpSink() as sink:
        account_id = await _smtp_account(container, tenant.organization_id, sink.port)
        sent = await _outbound(tenant, container, data, sink.port)
        ooo = _reply(
            sent["rfc822"],
            body="I am out of the office. STOP",
            extra="Auto-Submitted: auto-replied\r\n",
        )
        r = await tenant.client.post(
            f"/webhooks/smtp/{account_id}", content=ooo, headers=_signed(ooo)
        )
        assert r.status_code == 200
        await drain(container)
        # Control: the borrower's own STOP does revoke.
        stop = _reply(sent["rfc822"], body="STOP")
        r = await tenant.client.post(
            f"/webhooks/smtp/{account_id}", content=stop, headers=_signed(stop)
        )
        await drain(container)
    inbound = await _rows(
        container,
        "SELECT body, flags FROM messages WHERE direction = 'inbound' ORDER BY created_at",
    )
    assert inbound[0][1] == ["auto_reply"]
    revocations = await _rows(
        container, "SELECT source_message_id FROM consent_events WHERE action = 'revoke'"
    )
    assert len(revocations) == 1  # the STOP, not the out-of-office


async def test_delayed_dsn_records_a_deferral_without_changing_the_status(
    tenant: Any, container: Any
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    async with SmtpSink() as sink:
        account_id = await _smtp_account(container, tenant.organization_id, sink.port)
        sent = await _outbound(tenant, container, data, sink.port)
    dsn = (
        "From: MAILER-DAEMON@mx.acme.test\r\nTo: collections@acme.test\r\n"
        f"Subject: Delayed Mail\r\nDate: {formatdate(usegmt=True)}\r\n"
        "Message-ID: <delay-42@mx.acme.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="d"\r\n\r\n'
        "--d\r\nContent-Type: text/plain\r\n\r\nStill trying.\r\n"
        "--d\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.acme.test\r\n\r\n"
        "Final-Recipient: rfc822; pat.doe@example.com\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
        "Diagnostic-Code: smtp; 451 4.4.1 try again later\r\n\r\n"
        f"--d\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {sent['rfc822']}\r\n\r\n"
        "--d--\r\n"
    ).encode()
    r = await tenant.client.post(f"/webhooks/smtp/{account_id}", content=dsn, headers=_signed(dsn))
    assert r.status_code == 200, r.text
    report = (await tenant.client.get(f"/api/messages/{sent['messageId']}/delivery-report")).json()
    assert report["status"] == "sent"
    (deferral,) = [e for e in report["events"] if e["event"] == "deferred"]
    assert deferral["reason"] == "4.4.1 451 4.4.1 try again later"
    assert deferral["source"] == "provider"
