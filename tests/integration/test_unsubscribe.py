"""Email unsubscribe: the link in every email, RFC 8058 one-click headers on the wire, the
confirmation page, and what using the link does to the consent ledger and to waiting and
later emails (Reg F 1006.6(e) opt-out notice, 1006.14(h) medium restriction)."""

from __future__ import annotations

import asyncio
import base64
import email
import re
import uuid
from email import policy
from typing import Any

import httpx
import pytest

from parley.domain.channels import Channel
from parley.peers.smtp_sink import SmtpSink
from parley.services import unsubscribe as unsubscribe_svc
from tests.support import factories
from tests.support.live import drain

EMAIL = "pat.doe@example.com"
LINK = re.compile(r"https?://[^\s\"'<>]+/unsubscribe/([A-Za-z0-9_-]+)")


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
async def anonymous(container: Any) -> Any:
    """A client without credentials: the borrower's browser or mail client."""
    from parley.api.app import create_app

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container)), base_url="http://testserver"
    ) as client:
        yield client


async def _rows(container: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


async def _scalar(container: Any, sql: str, *params: Any) -> Any:
    rows = await _rows(container, sql, *params)
    return rows[0][0] if rows else None


async def _settle(container: Any) -> None:
    """Drain until no job is ready (a draining worker may leave late-deferred jobs)."""
    for _ in range(10):
        await drain(container)
        ready = await _scalar(
            container,
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' "
            "AND queue_name IN ('dispatch', 'receipts') "
            "AND (scheduled_at IS NULL OR scheduled_at <= now())",
        )
        if not ready:
            return
    raise AssertionError("jobs kept coming")


async def _send(tenant: Any, case_id: Any, **body: Any) -> dict[str, Any]:
    r = await tenant.client.post(f"/api/cases/{case_id}/messages", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def _status(tenant: Any, message_id: Any) -> str:
    r = await tenant.client.get(f"/api/messages/{message_id}")
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


async def _consent(container: Any) -> list[tuple[Any, ...]]:
    return await _rows(
        container,
        "SELECT channel, action, source, contact_point_id, address, source_message_id "
        "FROM consent_events ORDER BY id",
    )


async def _email_cp(container: Any, borrower_id: Any) -> Any:
    return await _scalar(
        container,
        "SELECT id FROM contact_points WHERE borrower_id = %s AND kind = 'email'",
        borrower_id,
    )


def _token_of(text: str) -> tuple[str, str]:
    """(url, token) of the one unsubscribe link in `text`."""
    links = {(m.group(0), m.group(1)) for m in LINK.finditer(text)}
    assert len(links) == 1, text
    return links.pop()


def _message_id_in(token: str) -> uuid.UUID:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(raw) > 16
    return uuid.UUID(bytes=raw[:16])


def _tampered(token: str) -> str:
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


async def _sandbox_setup(tenant: Any, container: Any) -> dict[str, Any]:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    data["email_cp"] = await _email_cp(container, data["borrower_id"])
    return data


async def _mail(tenant: Any, data: dict[str, Any], subject: str = "Your account") -> dict[str, Any]:
    return await _send(
        tenant,
        data["case_id"],
        messageType="email",
        subject=subject,
        body="Dear Pat, your balance is $1,234.50.",
        htmlBody="<p>Dear Pat, your balance is <b>$1,234.50</b>.</p>",
    )


# -- the link and the headers ------------------------------------------------------------


async def test_email_carries_the_link_in_body_html_and_list_unsubscribe_headers(
    tenant: Any, container: Any
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    async with SmtpSink() as sink:
        await factories.account(
            container,
            tenant.organization_id,
            "smtp",
            Channel.EMAIL,
            config={
                "host": "127.0.0.1",
                "port": sink.port,
                "from_address": "collections@acme.test",
            },
        )
        with_html = await _mail(tenant, data)
        text_only = await _send(
            tenant, data["case_id"], messageType="email", subject="Plain", body="Hello Pat."
        )
        url, token = _token_of(with_html["body"])
        assert url == f"{container.settings.base_url.rstrip('/')}/unsubscribe/{token}"
        assert _message_id_in(token) == uuid.UUID(with_html["messageId"])
        assert f'<a href="{url}">unsubscribe</a>' in with_html["htmlBody"]
        assert _token_of(with_html["htmlBody"]) == (url, token)
        plain_url, plain_token = _token_of(text_only["body"])
        assert _message_id_in(plain_token) == uuid.UUID(text_only["messageId"])
        assert text_only["htmlBody"] is None

        await _settle(container)
        assert await _status(tenant, with_html["messageId"]) == "sent"
        assert await _status(tenant, text_only["messageId"]) == "sent"
        received = {m.message_id: m.data for m in sink.messages}
        assert len(received) == 2
        for msg, link in ((with_html, url), (text_only, plain_url)):
            data_bytes = received[f"<{msg['messageId']}@acme.test>"]
            assert data_bytes is not None
            head = data_bytes.split(b"\r\n\r\n", 1)[0]
            unfolded = re.sub(rb"\r\n[ \t]+", b" ", head)
            assert f"List-Unsubscribe: <{link}>".encode() in unfolded.split(b"\r\n")
            assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in unfolded.split(b"\r\n")
            parsed = email.message_from_bytes(data_bytes, policy=policy.default)
            assert parsed["List-Unsubscribe"] == f"<{link}>"
            assert link in parsed.get_body(("plain",)).get_content()
        parsed = email.message_from_bytes(
            received[f"<{with_html['messageId']}@acme.test>"], policy=policy.default
        )
        assert f'href="{url}"' in parsed.get_body(("html",)).get_content()


# -- using the link --------------------------------------------------------------------


async def test_get_shows_a_form_and_changes_nothing(
    tenant: Any, container: Any, anonymous: Any
) -> None:
    data = await _sandbox_setup(tenant, container)
    first = await _mail(tenant, data)
    _, token = _token_of(first["body"])
    page = await anonymous.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f'<form method="post" action="/unsubscribe/{token}">' in page.text
    assert "<button" in page.text
    assert await _consent(container) == []
    assert await _status(tenant, first["messageId"]) == "queued"
    again = await _mail(tenant, data, "Second")
    assert again["status"] == "queued"


async def test_post_revokes_email_cancels_waiting_and_blocks_later_emails(
    tenant: Any, container: Any, anonymous: Any
) -> None:
    data = await _sandbox_setup(tenant, container)
    first = await _mail(tenant, data)
    await _settle(container)
    assert await _status(tenant, first["messageId"]) == "sent"
    waiting = await _mail(tenant, data, "Waiting")
    text = await _send(tenant, data["case_id"], messageType="sms", body="Hello Pat.")
    _, token = _token_of(first["body"])

    # RFC 8058 one-click: what a mail client POSTs.
    r = await anonymous.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Unsubscribed" in r.text
    assert await _consent(container) == [
        (
            "email",
            "revoke",
            "list_unsubscribe",
            data["email_cp"],
            EMAIL,
            uuid.UUID(first["messageId"]),
        )
    ]
    assert await _status(tenant, waiting["messageId"]) == "cancelled"
    report = (
        await tenant.client.get(f"/api/messages/{waiting['messageId']}/delivery-report")
    ).json()
    assert report["events"][-1]["event"] == "cancelled"
    assert report["events"][-1]["reason"] == "consent revoked (list_unsubscribe)"
    assert await _status(tenant, text["messageId"]) == "queued"  # email only

    later = await _mail(tenant, data, "Later")
    assert later["status"] == "blocked"
    decisions = (await tenant.client.get(f"/api/messages/{later['messageId']}/compliance")).json()[
        "decisions"
    ]
    assert [d["outcome"] for d in decisions] == ["block"]
    assert [v["reason"] for v in decisions[0]["rules"] if v["outcome"] == "block"] == [
        "consent_revoked"
    ]

    # The button a second time: the same answer, no second revocation.
    r2 = await anonymous.post(f"/unsubscribe/{token}")
    assert r2.status_code == 200
    assert len(await _consent(container)) == 1

    await _settle(container)
    assert await _status(tenant, text["messageId"]) == "sent"
    assert await _status(tenant, waiting["messageId"]) == "cancelled"
    assert await _status(tenant, later["messageId"]) == "blocked"
    sent_emails = await _rows(
        container,
        "SELECT id FROM messages WHERE channel = 'email' AND status = 'sent' ",
    )
    assert sent_emails == [(uuid.UUID(first["messageId"]),)]


async def test_concurrent_posts_record_one_revocation(
    tenant: Any, container: Any, anonymous: Any
) -> None:
    """The mail client's one-click and the borrower's click on the page, at once."""
    data = await _sandbox_setup(tenant, container)
    first = await _mail(tenant, data)
    _, token = _token_of(first["body"])
    answers = await asyncio.gather(*(anonymous.post(f"/unsubscribe/{token}") for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert [(c[0], c[1]) for c in await _consent(container)] == [("email", "revoke")]


async def test_tampered_or_foreign_tokens_are_404_and_write_nothing(
    tenant: Any, container: Any, anonymous: Any
) -> None:
    data = await _sandbox_setup(tenant, container)
    first = await _mail(tenant, data)
    text = await _send(tenant, data["case_id"], messageType="sms", body="Hello Pat.")
    _, token = _token_of(first["body"])
    async with container.db.pool.connection() as conn:
        secret = await unsubscribe_svc.secret(container, conn)
    bad = [
        _tampered(token),
        token[:-1],
        token + "A",
        "garbage",
        "x" * 40,
        # Validly signed, but for a text message / for no message at all.
        unsubscribe_svc.make_token(secret, uuid.UUID(text["messageId"])),
        unsubscribe_svc.make_token(secret, uuid.uuid4()),
    ]
    for candidate in bad:
        r = await anonymous.post(f"/unsubscribe/{candidate}")
        assert r.status_code == 404, candidate
        assert "not valid" in r.text
    for candidate in bad[:5]:
        r = await anonymous.get(f"/unsubscribe/{candidate}")
        assert r.status_code == 404, candidate
        assert "<form" not in r.text
    assert await _consent(container) == []
    assert await _status(tenant, first["messageId"]) == "queued"
    assert (await _mail(tenant, data, "Still allowed"))["status"] == "queued"


async def test_the_pages_button_is_recorded_as_the_link_not_one_click(
    tenant: Any, container: Any, anonymous: Any
) -> None:
    data = await _sandbox_setup(tenant, container)
    first = await _mail(tenant, data)
    _, token = _token_of(first["body"])
    r = await anonymous.post(f"/unsubscribe/{token}")  # the page's form: no one-click body
    assert r.status_code == 200, r.text
    assert [row[2] for row in await _consent(container)] == ["unsubscribe_link"]
