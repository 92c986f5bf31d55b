"""The SMTP provider against a real SMTP server (the aiosmtpd-based sink and the
minimal one): what arrives, connection reuse, error mapping, pool recovery."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from parley.channels.base import (
    OutboundMessage,
    ProviderConfigError,
    ProviderContext,
    SendResult,
)
from parley.channels.smtp import SPEC
from parley.channels.smtp.provider import SmtpProvider
from parley.domain.channels import Channel
from parley.peers.smtp_sink import (
    DROP_BEFORE_DATA,
    PERMFAIL,
    STALL_AFTER_DATA,
    TEMPFAIL,
    Implementation,
    SmtpSink,
)

IMPLEMENTATIONS: list[Implementation] = ["aiosmtpd", "minimal"]
IMAP = {"host": "h", "from_address": "a@b.c", "imap_host": "imap.b.c", "imap_username": "u"}


def build(port: int | None, secrets: dict[str, str] | None = None, **config: Any) -> SmtpProvider:
    context = ProviderContext(
        account_id="acct",
        channel=Channel.EMAIL,
        config={
            "host": "127.0.0.1",
            "port": port,
            "from_address": "billing@lender.example",
            "timeout": 5,
            **config,
        },
        secrets=secrets or {},
        public_base_url="",
    )
    provider = SPEC.factory(context)
    assert isinstance(provider, SmtpProvider)
    return provider


def message(n: int = 0, **changes: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "message_id": f"00000000-0000-0000-0000-{n:012d}",
        "channel": Channel.EMAIL,
        "to": "borrower@example.com",
        "sender": None,
        "subject": "Reminder",
        "body": "Hello\n.\nbye\n",
    }
    fields.update(changes)
    return OutboundMessage(**fields)


@pytest.fixture(params=IMPLEMENTATIONS)
async def sink(request: pytest.FixtureRequest) -> AsyncIterator[SmtpSink]:
    async with SmtpSink(implementation=request.param) as running:
        yield running


# -- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "secrets", "named"),
    [
        ({}, {}, ["host", "from_address"]),
        ({"host": "h", "from_address": "not-an-address"}, {}, ["from_address"]),
        ({"host": "h", "from_address": "a@b.c", "port": "25"}, {}, ["port"]),
        ({"host": "h", "from_address": "a@b.c", "port": 70000}, {}, ["port"]),
        ({"host": "h", "from_address": "a@b.c", "pool_size": 0}, {}, ["pool_size"]),
        (
            {"host": "h", "from_address": "a@b.c", "use_tls": True, "starttls": True},
            {},
            ["use_tls"],
        ),
        ({"host": "h", "from_address": "a@b.c", "username": "u"}, {}, ["password"]),
        ({"host": "h\r\nx", "from_address": "a@b.c"}, {}, ["host"]),
        (
            {**IMAP, "imap_tls": True, "imap_starttls": True},
            {"imap_password": "p"},
            ["imap_tls/imap_starttls"],
        ),
        ({**IMAP, "imap_starttls": "yes"}, {"imap_password": "p"}, ["imap_starttls"]),
        ({"host": "h", "from_address": "a@b.c", "imap_starttls": True}, {}, ["imap_host"]),
    ],
)
def test_invalid_config_names_the_fields(
    config: dict[str, Any], secrets: dict[str, str], named: list[str]
) -> None:
    context = ProviderContext("acct", Channel.EMAIL, config, secrets, "")
    with pytest.raises(ProviderConfigError) as caught:
        SPEC.factory(context)
    for field in named:
        assert field in str(caught.value)


def test_defaults() -> None:
    provider = build(25, pool_size=None)
    settings = provider.settings
    assert settings.pool_size == 10
    assert settings.message_id_domain == "lender.example"
    assert build(None, starttls=True).settings.port == 587
    assert build(None, use_tls=True).settings.port == 465
    imap = build(25, {"imap_password": "p"}, imap_host="i", imap_username="u").settings.imap
    assert imap is not None and (imap.tls, imap.starttls, imap.port) == (True, False, 993)
    imap = build(
        25, {"imap_password": "p"}, imap_host="i", imap_username="u", imap_starttls=True
    ).settings.imap
    assert imap is not None and (imap.tls, imap.starttls, imap.port) == (False, True, 143)
    secret = build(25, {"password": "hunter2-secret"}, username="u")
    assert "hunter2-secret" not in repr(secret) and "hunter2-secret" not in repr(secret.settings)


# -- what arrives -------------------------------------------------------------------


async def test_message_arrives_intact(sink: SmtpSink) -> None:
    provider = build(sink.port)
    sent = message(
        body="Hello Zoë\n.\n..\nbye", cc=["cc@example.com"], bcc=["audit@lender.example"]
    )
    result = await provider.send(sent)
    await provider.aclose()
    assert result == SendResult(accepted=True, provider_message_id=result.provider_message_id)
    assert result.provider_message_id == f"<{sent.message_id}@lender.example>"
    [received] = sink.messages
    assert received.message_id == result.provider_message_id
    assert received.mail_from == "billing@lender.example"
    assert sorted(received.rcpt_tos) == [
        "audit@lender.example",
        "borrower@example.com",
        "cc@example.com",
    ]
    assert received.data is not None and b"audit@" not in received.data
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    content = parsed.get_content()  # type: ignore[attr-defined]
    assert content.replace("\r\n", "\n") == "Hello Zoë\n.\n..\nbye\n"


async def test_international_address_goes_over_smtputf8(sink: SmtpSink) -> None:
    provider = build(sink.port)
    result = await provider.send(message(to="zoë@example.com"))
    await provider.aclose()
    assert result.accepted, result
    assert sink.messages[0].rcpt_tos == ("zoë@example.com",)


async def test_invalid_message_is_permanent_and_never_sent(sink: SmtpSink) -> None:
    provider = build(sink.port)
    result = await provider.send(message(subject="x\r\nBcc: all@example.com"))
    await provider.aclose()
    assert not result.accepted and not result.retryable
    assert result.error_code == "invalid_message"
    assert sink.connections == 0 and not sink.attempts


# -- connections --------------------------------------------------------------------


async def test_sequential_sends_reuse_one_connection(sink: SmtpSink) -> None:
    provider = build(sink.port, pool_size=4)
    for n in range(5):
        assert (await provider.send(message(n))).accepted
    await provider.aclose()
    assert sink.connections == 1
    assert len(sink.accepted) == 5


async def test_concurrent_sends_spread_over_the_pool(sink: SmtpSink) -> None:
    provider = build(sink.port, pool_size=4)
    results = await asyncio.gather(*(provider.send(message(n)) for n in range(40)))
    await provider.aclose()
    assert all(r.accepted for r in results)
    assert sink.connections == 4
    assert len(sink.accepted) == 40 and not sink.duplicates()


async def test_dead_pooled_connection_is_replaced_transparently(sink: SmtpSink) -> None:
    provider = build(sink.port, pool_size=1)
    assert (await provider.send(message(1))).accepted
    sink.fail_next(DROP_BEFORE_DATA)  # the pooled session dies at MAIL FROM
    result = await provider.send(message(2))
    await provider.aclose()
    assert result.accepted, result
    assert sink.connections == 2
    assert sink.accepted_count(f"<{message(2).message_id}@lender.example>") == 1


async def test_connection_closed_by_server_while_idle_is_reopened(sink: SmtpSink) -> None:
    provider = build(sink.port, pool_size=1)
    assert (await provider.send(message(1))).accepted
    sink.disconnect_all()
    await asyncio.sleep(0.05)
    assert (await provider.send(message(2))).accepted
    await provider.aclose()
    assert sink.connections == 2


# -- error mapping and recovery -----------------------------------------------------


async def test_reply_codes_map_and_the_session_stays_usable(sink: SmtpSink) -> None:
    provider = build(sink.port, pool_size=1)
    sink.fail_next(TEMPFAIL)
    sink.fail_next(PERMFAIL)
    temp = await provider.send(message(1))
    perm = await provider.send(message(2))
    ok = await provider.send(message(3))
    await provider.aclose()
    assert (temp.accepted, temp.retryable, temp.error_code) == (False, True, "451")
    assert (perm.accepted, perm.retryable, perm.error_code) == (False, False, "550")
    assert perm.error_detail and "rejected" in perm.error_detail
    assert ok.accepted
    assert sink.connections == 1


async def test_refused_recipients() -> None:
    async with SmtpSink(reject_recipients=["gone@example.com"]) as sink:
        provider = build(sink.port, pool_size=1)
        refused = await provider.send(message(1, to="gone@example.com"))
        partial = await provider.send(message(2, cc=["gone@example.com"]))
        after = await provider.send(message(3))
        await provider.aclose()
    assert (refused.accepted, refused.retryable, refused.error_code) == (False, False, "550")
    assert partial.accepted and partial.error_detail and "gone@example.com" in partial.error_detail
    assert after.accepted
    assert sink.messages[0].rcpt_tos == ("borrower@example.com",)
    assert sink.connections == 1, "RSET after the refusal keeps the session"


async def test_no_reply_after_data_is_an_unknown_outcome(sink: SmtpSink) -> None:
    provider = build(sink.port, pool_size=1, timeout=0.3)
    sink.fail_next(STALL_AFTER_DATA)
    stalled = await provider.send(message(1))
    after = await provider.send(message(2))
    await provider.aclose()
    assert stalled.outcome_unknown and not stalled.retryable and not stalled.accepted
    assert stalled.error_code == "timeout"
    assert sink.accepted_count(f"<{message(1).message_id}@lender.example>") == 1
    assert after.accepted and sink.connections == 2


async def test_connection_refused_is_retryable() -> None:
    async with SmtpSink() as sink:
        port = sink.port
    provider = build(port)
    result = await provider.send(message())
    await provider.aclose()
    assert (result.accepted, result.retryable, result.error_code) == (False, True, "connect_failed")


async def test_cancelled_send_returns_its_slot(sink: SmtpSink) -> None:
    provider = build(sink.port, pool_size=1, timeout=5)
    sink.fail_next(STALL_AFTER_DATA)
    stuck = asyncio.ensure_future(provider.send(message(1)))
    await asyncio.sleep(0.2)
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    async with asyncio.timeout(5):
        result = await provider.send(message(2))
    await provider.aclose()
    assert result.accepted


async def test_closed_provider_refuses_to_send(sink: SmtpSink) -> None:
    provider = build(sink.port)
    assert (await provider.send(message(1))).accepted
    await provider.aclose()
    result = await provider.send(message(2))
    assert (result.accepted, result.retryable, result.error_code) == (False, True, "closed")


async def test_login() -> None:
    async with SmtpSink(credentials=("mailer", "s3cret-pass")) as sink:
        good = build(sink.port, {"password": "s3cret-pass"}, username="mailer")
        bad = build(sink.port, {"password": "wrong"}, username="mailer")
        anonymous = build(sink.port)
        results = [await p.send(message(n)) for n, p in enumerate((good, bad, anonymous))]
        for provider in (good, bad, anonymous):
            await provider.aclose()
    ok, refused, unauthenticated = results
    assert ok.accepted
    # A wrong password is the account's fault, not the message's: retry later.
    assert (refused.accepted, refused.retryable, refused.error_code) == (False, True, "535")
    assert not unauthenticated.accepted and unauthenticated.error_code == "530"
    assert len(sink.accepted) == 1


def test_no_webhooks() -> None:
    from parley.channels.base import WebhookRequest, WebhookVerificationError

    provider = build(25)
    request = WebhookRequest("POST", "https://x/webhooks/smtp/acct", {}, b"{}")
    with pytest.raises(WebhookVerificationError):
        provider.verify_webhook(request)
    assert provider.parse_webhook(request) == []
