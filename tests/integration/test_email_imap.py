"""The smtp account's IMAP listener against a real dovecot: IDLE and polling delivery,
restart without skipping or re-delivering, and the whole path of a reply and a bounce
from the mailbox to the case timeline.

Until the listener supervisor lands, the sink here does what it will do with each batch:
inbound messages go to `inbox.inbound.handle`, delivery events through the receipts'
event path (`inbox.receipts.apply_event`).
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
from collections.abc import AsyncIterator, Sequence
from email.utils import formatdate
from typing import Any

import pytest

from parley.channels.base import DeliveryEvent, InboundMessage
from parley.channels.smtp.imap import MemoryCursor
from parley.domain.channels import Channel
from parley.inbox import imap_cursor, inbound, receipts
from parley.inbox.imap_cursor import DatabaseCursor
from parley.peers.smtp_sink import SmtpSink
from tests.support import factories
from tests.support.dovecot import Dovecot, running_dovecot
from tests.support.live import drain, wait_for
from tests.support.tap import Tap

# The IMAP tests poll or IDLE for real: a hung server must fail the test, not the suite.
DELIVERY_TIMEOUT = 20.0


@pytest.fixture
def dovecot() -> Any:
    with running_dovecot() as server:
        yield server


def _mail(n: int, *, in_reply_to: str | None = None, sender: str = "pat.doe@example.com") -> bytes:
    lines = [
        f"From: Pat Doe <{sender}>",
        "To: collections@acme.test",
        f"Subject: Re: Your account ({n})",
        f"Date: {formatdate(usegmt=True)}",
        f"Message-ID: <reply-{n}@mail.example.com>",
    ]
    if in_reply_to:
        lines += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    lines += ["Content-Type: text/plain; charset=utf-8", "", f"Reply number {n}.", ""]
    return "\r\n".join(lines).encode()


def _imap_config(server: Dovecot, **overrides: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": 1,  # sending is not exercised by the listener tests
        "from_address": "collections@acme.test",
        "imap_host": server.host,
        "imap_port": server.port,
        "imap_tls": False,
        "imap_username": server.user,
        "timeout": 5,
        **overrides,
    }


def _provider(server: Dovecot, **overrides: Any) -> Any:
    from parley.channels.registry import spec
    from parley.channels.testing import kit_provider

    return kit_provider(
        spec("smtp"),
        account_id="imap-test",
        channel=Channel.EMAIL,
        config=_imap_config(server, **overrides),
        secrets={"imap_password": server.password},
        public_base_url="http://parley.test",
    )


class Collector:
    """A sink that keeps what it was given."""

    def __init__(self) -> None:
        self.items: list[DeliveryEvent | InboundMessage] = []
        self.raws: list[bytes] = []

    async def __call__(self, items: Sequence[DeliveryEvent | InboundMessage], raw: bytes) -> None:
        self.items.extend(items)
        self.raws.append(raw)

    def ids(self) -> list[str]:
        return [i.provider_message_id for i in self.items]


@contextlib.asynccontextmanager
async def listening(provider: Any, sink: Any) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(provider.run(sink))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await provider.aclose()


async def _until(predicate: Any) -> Any:
    async def check() -> Any:
        return predicate()

    return await wait_for(check, timeout=DELIVERY_TIMEOUT)


async def test_idle_delivers_a_new_message_without_waiting_for_a_poll(dovecot: Dovecot) -> None:
    dovecot.append(_mail(1))
    # A poll interval far beyond the test's patience: only IDLE can deliver the second.
    provider = _provider(dovecot, imap_poll_interval=86400, imap_idle=True)
    sink = Collector()
    async with listening(provider, sink):
        await _until(lambda: sink.ids() == ["<reply-1@mail.example.com>"])
        await asyncio.to_thread(dovecot.append, _mail(2))
        await _until(lambda: len(sink.items) == 2)
    assert sink.ids() == ["<reply-1@mail.example.com>", "<reply-2@mail.example.com>"]
    assert sink.raws[1].startswith(b"From: Pat Doe")
    assert b"Reply number 2." in sink.raws[1]


async def test_implicit_tls_with_certificate_checks() -> None:
    with running_dovecot(tls=True) as server:
        server.append(_mail(1))
        # Control: the self-signed certificate is refused while certificates are checked.
        checked = _provider(server, imap_tls=True, validate_certs=True, imap_idle=False)
        refused = Collector()
        async with listening(checked, refused) as task:
            await asyncio.sleep(1.0)  # a connection attempt or two (not a timing assertion)
            assert not task.done()
        assert refused.items == []
        trusting = _provider(server, imap_tls=True, validate_certs=False, imap_idle=True)
        sink = Collector()
        async with listening(trusting, sink):
            await _until(lambda: sink.ids() == ["<reply-1@mail.example.com>"])


# -- STARTTLS: plaintext port 143, upgraded before the login --------------------------


def _through(tap: Tap, server: Dovecot, **overrides: Any) -> Any:
    """A provider that reaches the server through the recording tap."""
    return _provider(server, imap_host="127.0.0.1", imap_port=tap.port, **overrides)


async def test_starttls_upgrades_before_logging_in_and_delivers() -> None:
    with running_dovecot(starttls="yes") as server:
        server.append(_mail(1))
        async with Tap(server.host, server.port) as tap:
            # Control: the STARTTLS handshake checks the self-signed certificate too.
            checked = _through(tap, server, imap_tls=None, imap_starttls=True, imap_idle=False)
            refused = Collector()
            async with listening(checked, refused) as task:
                await asyncio.sleep(1.0)  # a connection attempt or two (not a timing assertion)
                assert not task.done()
            assert refused.items == []
            assert b"STARTTLS" in tap.sent and server.password.encode() not in tap.sent

            trusting = _through(
                tap, server, imap_tls=None, imap_starttls=True, validate_certs=False
            )
            assert trusting.settings.imap.starttls and not trusting.settings.imap.tls
            sink = Collector()
            async with listening(trusting, sink):
                await _until(lambda: sink.ids() == ["<reply-1@mail.example.com>"])
                await asyncio.to_thread(server.append, _mail(2))  # IDLE, over TLS
                await _until(lambda: len(sink.items) == 2)
    assert sink.ids() == ["<reply-1@mail.example.com>", "<reply-2@mail.example.com>"]
    assert b"Reply number 2." in sink.raws[1]
    # The login happened (mail arrived), yet neither it nor the password crossed in clear.
    assert b"LOGIN" not in tap.sent and server.password.encode() not in tap.sent


async def test_a_server_requiring_tls_refuses_plaintext_but_takes_starttls() -> None:
    with running_dovecot(starttls="required") as server:
        server.append(_mail(1))  # the helper's own client uses STARTTLS
        plain = imaplib.IMAP4(server.host, server.port, timeout=10)
        try:
            with pytest.raises(imaplib.IMAP4.error, match=r"(?i)plaintext"):
                plain.login(server.user, server.password)
        finally:
            plain.shutdown()
        async with Tap(server.host, server.port) as tap:
            plaintext = _through(tap, server, imap_tls=False, imap_idle=False)
            refused = Collector()
            async with listening(plaintext, refused) as task:
                await asyncio.sleep(1.0)  # a connection attempt or two (not a timing assertion)
                assert not task.done()
            assert refused.items == []
            upgraded = _through(tap, server, imap_starttls=True, validate_certs=False)
            sink = Collector()
            async with listening(upgraded, sink):
                await _until(lambda: sink.ids() == ["<reply-1@mail.example.com>"])


async def test_starttls_not_offered_fails_without_sending_the_password(
    dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    dovecot.append(_mail(1))
    caplog.set_level(logging.WARNING, logger="parley.channels.smtp.imap")
    async with Tap(dovecot.host, dovecot.port) as tap:
        provider = _through(tap, dovecot, imap_starttls=True, imap_tls=False)
        sink = Collector()
        async with listening(provider, sink) as task:
            await _until(lambda: "does not offer STARTTLS" in caplog.text)
            assert not task.done(), "the listener must keep trying, not die"
    assert sink.items == []
    assert "refusing to log in in plaintext" in caplog.text
    assert b"CAPABILITY" in tap.sent  # it did talk to the server...
    assert b"LOGIN" not in tap.sent and dovecot.password.encode() not in tap.sent  # ...not this


async def test_starttls_with_implicit_tls_is_a_422_and_nothing_is_created(
    tenant: Any, container: Any
) -> None:
    config = {
        "host": "smtp.acme.test",
        "from_address": "collections@acme.test",
        "imap_host": "imap.acme.test",
        "imap_username": "collections",
        "imap_tls": True,
        "imap_starttls": True,
    }
    r = await tenant.client.post(
        "/api/provider-accounts",
        json={
            "name": "mail",
            "provider": "smtp",
            "channel": "email",
            "config": config,
            "secrets": {"imap_password": "p"},
        },
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "imap_tls/imap_starttls: choose implicit TLS or STARTTLS" in r.text
    names = [a["name"] for a in (await tenant.client.get("/api/provider-accounts")).json()]
    assert "mail" not in names


async def test_polling_without_idle_delivers_new_mail(dovecot: Dovecot) -> None:
    provider = _provider(dovecot, imap_poll_interval=1, imap_idle=False)
    sink = Collector()
    async with listening(provider, sink):
        await asyncio.to_thread(dovecot.append, _mail(1))
        await _until(lambda: len(sink.items) == 1)
        await asyncio.to_thread(dovecot.append, _mail(2))
        await _until(lambda: len(sink.items) == 2)
    assert sink.ids() == ["<reply-1@mail.example.com>", "<reply-2@mail.example.com>"]


async def test_a_restart_neither_skips_nor_redelivers(
    dovecot: Dovecot, tenant: Any, container: Any
) -> None:
    account_id = await factories.account(
        container,
        tenant.organization_id,
        "smtp",
        Channel.EMAIL,
        config=_imap_config(dovecot, imap_poll_interval=1, imap_idle=False),
        secrets_={"imap_password": dovecot.password},
    )
    account = await container.providers.account(str(account_id))
    dovecot.append(_mail(1))
    first = Collector()
    provider = _provider(dovecot, imap_poll_interval=1, imap_idle=False)
    provider.cursor = DatabaseCursor(container.db, account)
    async with listening(provider, first):
        await _until(lambda: len(first.items) == 1)
    # While nobody listened:
    dovecot.append(_mail(2))
    second = Collector()
    provider = _provider(dovecot, imap_poll_interval=1, imap_idle=False)
    provider.cursor = DatabaseCursor(container.db, account)
    async with listening(provider, second):
        await _until(lambda: len(second.items) == 1)
        await asyncio.to_thread(dovecot.append, _mail(3))
        await _until(lambda: len(second.items) == 2)
    assert second.ids() == ["<reply-2@mail.example.com>", "<reply-3@mail.example.com>"]
    # Without a stored position (a fresh in-memory cursor) everything comes again.
    third = Collector()
    provider = _provider(dovecot, imap_poll_interval=1, imap_idle=False)
    provider.cursor = MemoryCursor()
    async with listening(provider, third):
        await _until(lambda: len(third.items) == 3)


async def test_cursor_starts_over_when_uidvalidity_changes(tenant: Any, container: Any) -> None:
    account_id = await factories.account(
        container,
        tenant.organization_id,
        "smtp",
        Channel.EMAIL,
        config={"host": "127.0.0.1", "from_address": "c@acme.test"},
    )
    account = await container.providers.account(str(account_id))
    cursor = DatabaseCursor(container.db, account)
    assert await cursor.load("INBOX", 7) == 0
    await cursor.save("INBOX", 7, 41)
    await cursor.save("INBOX", 7, 42)
    assert await cursor.load("INBOX", 7) == 42
    assert await cursor.load("Archive", 7) == 0
    assert await cursor.load("INBOX", 8) == 0  # renumbered folder: from the start
    await cursor.save("INBOX", 8, 3)
    assert await cursor.load("INBOX", 7) == 0
    assert await cursor.load("INBOX", 8) == 3


async def test_wrong_password_keeps_retrying_without_delivering(dovecot: Dovecot) -> None:
    from parley.channels.registry import spec
    from parley.channels.testing import kit_provider

    provider = kit_provider(
        spec("smtp"),
        account_id="imap-test",
        channel=Channel.EMAIL,
        config=_imap_config(dovecot),
        secrets={"imap_password": "wrong"},
        public_base_url="http://parley.test",
    )
    dovecot.append(_mail(1))
    sink = Collector()
    async with listening(provider, sink) as task:
        await asyncio.sleep(1.5)  # a few attempts (not a timing assertion)
        assert not task.done(), "the listener must keep trying, not die"
    assert sink.items == []


# -- the whole path: mailbox -> inbox -> case timeline ---------------------------------


def processing_sink(container: Any, account: Any) -> Any:
    """What the listener supervisor does with a batch: events to the receipts path,
    inbound messages to the inbox."""

    async def sink(items: Sequence[DeliveryEvent | InboundMessage], raw: bytes) -> None:
        for item in items:
            if isinstance(item, DeliveryEvent):
                async with container.db.pool.connection() as conn, conn.transaction():
                    await receipts.apply_event(conn, account.id, item)
            else:
                await inbound.handle(container, account, item)

    return sink


async def test_reply_and_bounce_from_the_mailbox_reach_the_case(
    dovecot: Dovecot, tenant: Any, container: Any
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    other = await factories.borrower_with_case(
        container, tenant.organization_id, email="gone@example.com", phone="+12025550199"
    )
    async with SmtpSink() as smtp:
        account_id = await factories.account(
            container,
            tenant.organization_id,
            "smtp",
            Channel.EMAIL,
            config=_imap_config(dovecot, port=smtp.port, imap_poll_interval=1, imap_idle=True),
            secrets_={"imap_password": dovecot.password},
        )
        sent = []
        for case in (data, other):
            r = await tenant.client.post(
                f"/api/cases/{case['case_id']}/messages",
                json={"messageType": "email", "subject": "Your account", "body": "Hello."},
            )
            assert r.status_code == 201, r.text
            sent.append(r.json())
        await drain(container)
    original, doomed = sent
    rows = await _rows(
        container,
        "SELECT id::text, rfc822_message_id, provider_message_id, status, thread_id::text "
        "FROM messages WHERE direction = 'outbound' ORDER BY created_at",
    )
    by_id = {r[0]: r for r in rows}
    ours = by_id[original["messageId"]][1]
    assert by_id[original["messageId"]][3] == "sent"
    assert by_id[original["messageId"]][2] == ours  # the bounce matches on this

    # The borrower answers from another address; the DSN for the other email arrives.
    dovecot.append(_mail(7, in_reply_to=ours, sender="pat.work@example.org"))
    dovecot.append(_dsn(by_id[doomed["messageId"]][1], "gone@example.com"))

    account = await container.providers.account(str(account_id))
    provider = await container.providers.get(account)
    imap_cursor.attach(container.db, account, provider)
    task = asyncio.create_task(provider.run(processing_sink(container, account)))
    try:

        async def arrived() -> Any:
            inbound_rows = await _rows(
                container,
                "SELECT case_id::text, thread_id::text, body, from_address FROM messages "
                "WHERE direction = 'inbound'",
            )
            bounced = await _rows(
                container,
                "SELECT error_detail FROM messages WHERE id = %s AND status = 'bounced'",
                doomed["messageId"],
            )
            return (inbound_rows, bounced) if inbound_rows and bounced else None

        (reply,), ((detail,),) = await wait_for(arrived, timeout=DELIVERY_TIMEOUT)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert reply[0] == str(data["case_id"])
    assert reply[1] == by_id[original["messageId"]][4]  # the original's thread
    assert reply[2].startswith("Reply number 7.")
    assert detail == "5.1.1 550 5.1.1 <gone@example.com>: Recipient address rejected"

    # As the API shows it: on the case's messages and the delivery report.
    listing = await tenant.client.get(f"/api/cases/{data['case_id']}/messages?direction=inbound")
    assert [m["subject"] for m in listing.json()["messages"]] == ["Re: Your account (7)"]
    report = await tenant.client.get(f"/api/messages/{doomed['messageId']}/delivery-report")
    assert report.json()["status"] == "bounced"
    bounce = [e for e in report.json()["events"] if e["event"] == "bounced"]
    assert len(bounce) == 1 and bounce[0]["reason"] == detail


def _dsn(original_id: str, recipient: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.acme.test\r\n"
        "To: collections@acme.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        "Message-ID: <dsn-imap-1@mx.acme.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.acme.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected\r\n\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {original_id}\r\nSubject: Your account\r\n\r\n"
        "--b--\r\n"
    ).encode()


async def _rows(container: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())
