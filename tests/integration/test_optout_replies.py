"""Borrowers' replies by text: STOP and its siblings, START, HELP and free-text opt-outs.

Each reply arrives as a signed provider webhook (sandbox or Twilio), is stored as a
receipt, and is handled by the `process_inbound` job (run here with `drain`). What the
tests read back is the database (consent ledger, messages, events) and the API, plus
what actually reached the provider: TCPA 47 USC 227 / FCC 24-24 and Reg F 1006.6(e),
1006.14(h) in shared/reference/compliance.md.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from twilio.request_validator import RequestValidator

from parley.channels.sandbox.provider import SIGNATURE_HEADER, SandboxProvider, sign
from parley.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioApiPeer
from tests.support import factories
from tests.support.live import drain, live_api

PHONE = "+12025550123"  # the borrower (factories.borrower_with_case's default)
OUR_NUMBER = "+18005550100"  # the sandbox and Twilio accounts' sender
PHONE_MEDIA = ["sms", "voice", "whatsapp"]


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def provider_sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every message the sandbox provider accepted: (channel, to, body) -- the provider's
    side of the story, independent of what Parley wrote in its own tables."""
    sent: list[tuple[str, str, str]] = []
    original = SandboxProvider.send

    async def send(self: SandboxProvider, message: Any) -> Any:
        result = await original(self, message)
        if result.accepted:
            sent.append((self.channel.value, message.to, message.body))
        return result

    monkeypatch.setattr(SandboxProvider, "send", send)
    return sent


async def _setup(tenant: Any, container: Any) -> dict[str, Any]:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    accounts = await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    data["accounts"] = accounts
    data["phone_cp"] = await _scalar(
        container,
        "SELECT id FROM contact_points WHERE borrower_id = %s AND kind = 'phone'",
        data["borrower_id"],
    )
    data["email_cp"] = await _scalar(
        container,
        "SELECT id FROM contact_points WHERE borrower_id = %s AND kind = 'email'",
        data["borrower_id"],
    )
    return data


async def _rows(container: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


async def _scalar(container: Any, sql: str, *params: Any) -> Any:
    rows = await _rows(container, sql, *params)
    return rows[0][0] if rows else None


async def _send(tenant: Any, case_id: Any, **body: Any) -> dict[str, Any]:
    r = await tenant.client.post(f"/api/cases/{case_id}/messages", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def _message(tenant: Any, message_id: Any) -> dict[str, Any]:
    r = await tenant.client.get(f"/api/messages/{message_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def _reply(
    tenant: Any,
    data: dict[str, Any],
    body: str,
    *,
    sender: str = PHONE,
    channel: str = "sms",
) -> str:
    """POST a signed sandbox inbound message (the borrower replying); its provider id."""
    provider_id = "sbx_" + uuid.uuid4().hex
    raw = orjson.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": "inbound",
            "message_id": provider_id,
            "channel": channel,
            "from": sender,
            "to": OUR_NUMBER,
            "body": body,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
    )
    account = data["accounts"][channel]
    r = await tenant.client.post(
        f"/webhooks/sandbox/{account}",
        content=raw,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(data["accounts"]["secret"], raw),
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "duplicate": False}
    return provider_id


async def _consent(container: Any, borrower_id: Any) -> list[dict[str, Any]]:
    rows = await _rows(
        container,
        "SELECT channel, action, source, contact_point_id, address, source_message_id, "
        "purpose, evidence FROM consent_events WHERE borrower_id = %s ORDER BY id",
        borrower_id,
    )
    keys = (
        "channel",
        "action",
        "source",
        "contact_point_id",
        "address",
        "source_message_id",
        "purpose",
        "evidence",
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]


async def _by_purpose(container: Any, case_id: Any, purpose: str) -> list[tuple[Any, ...]]:
    """(id, status, channel, to_address, body) of outbound messages with that purpose."""
    return await _rows(
        container,
        "SELECT id, status, channel, to_address, body FROM messages WHERE case_id = %s "
        "AND direction = 'outbound' AND purpose = %s ORDER BY created_at",
        case_id,
        purpose,
    )


async def _inbound(container: Any, case_id: Any) -> list[tuple[Any, ...]]:
    """(id, status, body, flags, provider_message_id) of inbound messages on the case."""
    return await _rows(
        container,
        "SELECT id, status, body, flags, provider_message_id FROM messages "
        "WHERE case_id = %s AND direction = 'inbound' ORDER BY created_at",
        case_id,
    )


async def _settle(container: Any, queues: list[str] | None = None) -> None:
    """Drain until no job is ready: a job deferred while the worker runs (the confirmation
    the inbound job sends) may be left for the next run by a draining worker."""
    wanted = queues or ["dispatch", "receipts"]
    for _ in range(10):
        await drain(container, wanted)
        ready = await _scalar(
            container,
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' "
            "AND queue_name = ANY(%s) AND (scheduled_at IS NULL OR scheduled_at <= now())",
            wanted,
        )
        if not ready:
            return
    raise AssertionError("jobs kept coming")


async def _first_contact(tenant: Any, container: Any, data: dict[str, Any]) -> dict[str, Any]:
    """An SMS that went out before the borrower replies (what they reply to)."""
    msg = await _send(
        tenant,
        data["case_id"],
        messageType="sms",
        body="Your balance is due. Reply STOP to opt out.",
    )
    await _settle(container)
    assert (await _message(tenant, msg["messageId"]))["status"] == "sent"
    return msg


async def _compliance_reasons(tenant: Any, message_id: Any) -> list[tuple[str, str, list[str]]]:
    r = await tenant.client.get(f"/api/messages/{message_id}/compliance")
    assert r.status_code == 200, r.text
    return [
        (
            d["stage"],
            d["outcome"],
            [v["reason"] for v in d["rules"] if v.get("outcome") == "block"],
        )
        for d in r.json()["decisions"]
    ]


async def _assert_blocked_for_consent(tenant: Any, data: dict[str, Any]) -> None:
    blocked = await _send(tenant, data["case_id"], messageType="sms", body="Please pay today.")
    assert blocked["status"] == "blocked"
    decisions = await _compliance_reasons(tenant, blocked["messageId"])
    assert decisions == [("enqueue", "block", ["consent_revoked"])], decisions


# -- 1. STOP and its siblings -------------------------------------------------------------


@pytest.mark.parametrize("reply", [" stop ", "Stop!", "UNSUBSCRIBE", "opt out"])
async def test_stop_reply_revokes_cancels_confirms_once_and_blocks(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]], reply: str
) -> None:
    data = await _setup(tenant, container)
    case_id = data["case_id"]
    await _first_contact(tenant, container, data)
    # Waiting messages: two texts (one queued, one scheduled), a WhatsApp message to the
    # same number, and an email (another medium: a text STOP does not cover it).
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    queued_sms = await _send(tenant, case_id, messageType="sms", body="Reminder one.")
    scheduled_sms = await _send(
        tenant, case_id, messageType="sms", body="Reminder two.", sendAt=later
    )
    await factories.open_whatsapp_window(container, tenant.organization_id, PHONE)
    queued_wa = await _send(tenant, case_id, messageType="whatsapp", body="Reminder three.")
    queued_mail = await _send(
        tenant, case_id, messageType="email", subject="Your account", body="Hello."
    )
    assert [queued_sms["status"], scheduled_sms["status"], queued_wa["status"]] == [
        "queued",
        "scheduled",
        "queued",
    ]
    before_stop = len(provider_sends)

    provider_id = await _reply(tenant, data, reply)
    await _settle(container, ["receipts"])  # the inbound job only: nothing dispatched yet

    # The reply is on the borrower's case, as received, and readable through the API.
    (inbound,) = await _inbound(container, case_id)
    inbound_id, status, body, flags, pmid = inbound
    assert (status, body, flags, pmid) == ("received", reply, [], provider_id)
    api = await _message(tenant, inbound_id)
    assert api["direction"] == "inbound" and api["status"] == "received"
    assert api["caseId"] == str(case_id) and api["borrowerId"] == str(data["borrower_id"])
    assert api["messageType"] == "sms" and api["from"] == PHONE
    # The stored body is the reply verbatim (above); CamelModel's str_strip_whitespace
    # trims it in the API output, which this test does not pin down.
    assert api["body"].strip() == reply.strip()
    listed = (await tenant.client.get(f"/api/cases/{case_id}/messages?direction=inbound")).json()
    assert [m["messageId"] for m in listed["messages"]] == [str(inbound_id)]

    # The ledger: one revocation per phone medium, on this number, by keyword.
    ledger = await _consent(container, data["borrower_id"])
    assert sorted(e["channel"] for e in ledger) == PHONE_MEDIA
    for entry in ledger:
        assert entry["action"] == "revoke" and entry["source"] == "reply_keyword"
        assert entry["contact_point_id"] == data["phone_cp"] and entry["address"] == PHONE
        assert entry["source_message_id"] == inbound_id and entry["purpose"] == "all"
        assert entry["evidence"]["action"] == "opt_out" and entry["evidence"]["keyword"] is True

    # Waiting texts and WhatsApp messages to that number are cancelled, saying why.
    for waiting in (queued_sms, scheduled_sms, queued_wa):
        mid = waiting["messageId"]
        assert (await _message(tenant, mid))["status"] == "cancelled"
        report = (await tenant.client.get(f"/api/messages/{mid}/delivery-report")).json()
        last = report["events"][-1]
        assert last["event"] == "cancelled" and last["status"] == "cancelled"
        assert last["reason"] == "consent revoked (reply_keyword)"
    assert (await _message(tenant, queued_mail["messageId"]))["status"] == "queued"

    # Exactly one confirmation, to that number, on the reply's channel.
    (confirmation,) = await _by_purpose(container, case_id, "opt_out_confirmation")
    conf_id, conf_status, conf_channel, conf_to, conf_body = confirmation
    assert (conf_status, conf_channel, conf_to) == ("queued", "sms", PHONE)
    assert conf_body == (
        "You have been unsubscribed from text messages, WhatsApp messages and calls from "
        "Acme Collections. Reply START to resubscribe."
    )
    assert {e["evidence"]["confirmationMessageId"] for e in ledger} == {str(conf_id)}

    await _settle(container)
    assert (await _message(tenant, conf_id))["status"] == "sent"
    assert (await _message(tenant, queued_mail["messageId"]))["status"] == "sent"
    for waiting in (queued_sms, scheduled_sms, queued_wa):
        assert (await _message(tenant, waiting["messageId"]))["status"] == "cancelled"

    # A second STOP is recorded but confirms nothing and changes nothing.
    await _reply(tenant, data, reply)
    await _settle(container)
    assert len(await _inbound(container, case_id)) == 2
    assert len(await _by_purpose(container, case_id, "opt_out_confirmation")) == 1
    assert len(await _consent(container, data["borrower_id"])) == 3

    # A new text is blocked at once, and the worker sends nothing either.
    await _assert_blocked_for_consent(tenant, data)
    await _settle(container)

    after_stop = provider_sends[before_stop:]
    assert [s for s in after_stop if s[0] != "email"] == [("sms", PHONE, conf_body)]
    sent_texts = await _rows(
        container,
        "SELECT purpose FROM messages WHERE to_address = %s AND direction = 'outbound' "
        "AND channel <> 'email' AND status NOT IN ('queued', 'scheduled', 'cancelled', "
        "'blocked') ORDER BY created_at",
        PHONE,
    )
    assert [p for (p,) in sent_texts] == ["collection", "opt_out_confirmation"]


async def test_stop_played_by_the_sandbox_through_the_live_webhook(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]]
) -> None:
    data = await _setup(tenant, container)
    await _first_contact(tenant, container, data)
    async with live_api(container):
        account = await container.providers.account(str(data["accounts"]["sms"]))
        provider = await container.providers.get(account)
        provider_id = await provider.simulate_inbound(
            sender=PHONE, body="STOP", recipient=OUR_NUMBER
        )
        assert await _scalar(container, "SELECT count(*) FROM webhook_receipts") == 1
        await _settle(container)
    (inbound,) = await _inbound(container, data["case_id"])
    assert inbound[1:] == ("received", "STOP", [], provider_id)
    ledger = await _consent(container, data["borrower_id"])
    assert sorted((e["channel"], e["action"], e["source"]) for e in ledger) == [
        (c, "revoke", "reply_keyword") for c in PHONE_MEDIA
    ]
    (confirmation,) = await _by_purpose(container, data["case_id"], "opt_out_confirmation")
    assert confirmation[1] == "sent"
    assert provider_sends[-1] == ("sms", PHONE, confirmation[4])


async def test_two_stops_handled_together_confirm_once(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]]
) -> None:
    """Both receipts are waiting when the worker starts (it runs jobs concurrently)."""
    data = await _setup(tenant, container)
    await _first_contact(tenant, container, data)
    for reply in ("STOP", "stop", "Stop.", "STOP!"):
        await _reply(tenant, data, reply)
    await _settle(container)
    assert len(await _inbound(container, data["case_id"])) == 4
    assert len(await _by_purpose(container, data["case_id"], "opt_out_confirmation")) == 1
    assert sorted(e["channel"] for e in await _consent(container, data["borrower_id"])) == (
        PHONE_MEDIA
    )
    assert len([s for s in provider_sends if "unsubscribed" in s[2]]) == 1


async def test_stop_on_two_channels_at_once_revokes_and_confirms_once(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]]
) -> None:
    """STOP by text and by WhatsApp from the same number, handled concurrently (two
    threads, so nothing else serializes them): one set of revocations, one confirmation
    ("One confirmation text is allowed", TCPA)."""
    data = await _setup(tenant, container)
    await _first_contact(tenant, container, data)
    await _reply(tenant, data, "STOP")
    await _reply(tenant, data, "STOP", channel="whatsapp")
    await _settle(container)
    inbound = await _rows(
        container, "SELECT channel FROM messages WHERE direction = 'inbound' ORDER BY channel"
    )
    assert inbound == [("sms",), ("whatsapp",)]
    ledger = await _consent(container, data["borrower_id"])
    assert sorted(e["channel"] for e in ledger) == PHONE_MEDIA
    assert len(await _by_purpose(container, data["case_id"], "opt_out_confirmation")) == 1
    assert len([s for s in provider_sends if "unsubscribed" in s[2]]) == 1


async def test_stop_is_honoured_when_no_confirmation_can_be_sent(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]]
) -> None:
    """The account the reply came in on was disabled meanwhile: the confirmation cannot go,
    but the revocation (and the cancellation of what waits) must not be lost with it."""
    data = await _setup(tenant, container)
    await _first_contact(tenant, container, data)
    waiting = await _send(tenant, data["case_id"], messageType="sms", body="Reminder.")
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "UPDATE provider_accounts SET enabled = false WHERE id = %s",
            (data["accounts"]["sms"],),
        )
    sent_before = len(provider_sends)
    await _reply(tenant, data, "STOP")
    await _settle(container, ["receipts"])
    (inbound,) = await _inbound(container, data["case_id"])
    assert inbound[1:3] == ("received", "STOP")
    ledger = await _consent(container, data["borrower_id"])
    assert sorted((e["channel"], e["action"]) for e in ledger) == [
        (c, "revoke") for c in PHONE_MEDIA
    ]
    assert (await _message(tenant, waiting["messageId"]))["status"] == "cancelled"
    assert await _by_purpose(container, data["case_id"], "opt_out_confirmation") == []
    jobs = await _rows(
        container,
        "SELECT status FROM procrastinate_jobs WHERE task_name = 'parley:process_inbound'",
    )
    assert jobs == [("succeeded",)]
    await _settle(container)
    assert len(provider_sends) == sent_before


async def test_stop_revokes_only_for_the_organization_it_was_sent_to(
    tenant: Any, other_tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]]
) -> None:
    """The same number is a borrower of another organization too: a STOP to our number
    revokes nothing there."""
    data = await _setup(tenant, container)
    other = await _setup(other_tenant, container)
    await _first_contact(tenant, container, data)
    await _first_contact(other_tenant, container, other)
    await _reply(tenant, data, "STOP")
    await _settle(container)
    assert len(await _consent(container, data["borrower_id"])) == 3
    assert await _consent(container, other["borrower_id"]) == []
    assert await _inbound(container, other["case_id"]) == []
    assert (await _send(other_tenant, other["case_id"], messageType="sms", body="Hi."))[
        "status"
    ] == "queued"
    await _assert_blocked_for_consent(tenant, data)


# -- 2. START, YES, UNSTOP ---------------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["START", "yes", "Unstop!"])
async def test_opt_in_keyword_after_stop_restores_texts(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]], keyword: str
) -> None:
    data = await _setup(tenant, container)
    case_id = data["case_id"]
    await _first_contact(tenant, container, data)
    await _reply(tenant, data, "STOP")
    await _settle(container)
    await _assert_blocked_for_consent(tenant, data)

    start_id = await _reply(tenant, data, keyword)
    await _settle(container)
    inbound_id = await _scalar(
        container, "SELECT id FROM messages WHERE provider_message_id = %s", start_id
    )
    ledger = await _consent(container, data["borrower_id"])
    grants = [e for e in ledger if e["action"] == "grant"]
    assert [(e["channel"], e["source"], e["contact_point_id"]) for e in grants] == [
        ("sms", "reply_keyword", data["phone_cp"])
    ]
    assert grants[0]["source_message_id"] == inbound_id
    (confirmation,) = await _by_purpose(container, case_id, "opt_in_confirmation")
    assert confirmation[1:4] == ("sent", "sms", PHONE)
    assert confirmation[4] == (
        "You have resubscribed to text messages from Acme Collections. "
        "Reply HELP for help, STOP to unsubscribe."
    )
    assert provider_sends[-1] == ("sms", PHONE, confirmation[4])

    # Sending resumes: a new text is queued and reaches the provider.
    msg = await _send(tenant, case_id, messageType="sms", body="Thanks, here is your balance.")
    assert msg["status"] == "queued"
    await _settle(container)
    assert (await _message(tenant, msg["messageId"]))["status"] == "sent"
    assert provider_sends[-1][:2] == ("sms", PHONE)
    assert provider_sends[-1][2].startswith("Thanks, here is your balance.")

    # A second opt-in grants nothing more and confirms nothing more.
    await _reply(tenant, data, keyword)
    await _settle(container)
    assert len(await _by_purpose(container, case_id, "opt_in_confirmation")) == 1
    assert len(await _consent(container, data["borrower_id"])) == len(ledger)

    # STOP again: texts are revoked anew (the rest still is) and confirmed anew.
    await _reply(tenant, data, "STOP")
    await _settle(container)
    ledger = await _consent(container, data["borrower_id"])
    assert [(e["channel"], e["action"]) for e in ledger[-1:]] == [("sms", "revoke")]
    confirmations = await _by_purpose(container, case_id, "opt_out_confirmation")
    assert [c[1] for c in confirmations] == ["sent", "sent"]
    await _assert_blocked_for_consent(tenant, data)


async def test_start_without_a_prior_stop_changes_nothing(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]]
) -> None:
    data = await _setup(tenant, container)
    await _first_contact(tenant, container, data)
    sent_before = len(provider_sends)
    await _reply(tenant, data, "START")
    await _settle(container)
    assert len(await _inbound(container, data["case_id"])) == 1
    assert await _consent(container, data["borrower_id"]) == []
    assert await _by_purpose(container, data["case_id"], "opt_in_confirmation") == []
    assert len(provider_sends) == sent_before


# -- 3. HELP ------------------------------------------------------------------------------


async def test_help_is_answered_and_changes_no_consent(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]]
) -> None:
    data = await _setup(tenant, container)
    case_id = data["case_id"]
    await _first_contact(tenant, container, data)
    await _reply(tenant, data, "HELP")
    await _settle(container)
    assert await _consent(container, data["borrower_id"]) == []
    (help_reply,) = await _by_purpose(container, case_id, "help_reply")
    assert help_reply[1:4] == ("sent", "sms", PHONE)
    text = help_reply[4]
    assert text.startswith("Acme Collections: for help with your account contact ")
    assert text.endswith("Msg & data rates may apply. Reply STOP to unsubscribe.")
    assert provider_sends[-1] == ("sms", PHONE, text)
    assert (await _inbound(container, case_id))[0][3] == []  # no flag: nothing to review
    # Texting continues as before.
    msg = await _send(tenant, case_id, messageType="sms", body="Your balance is due.")
    assert msg["status"] == "queued"

    # Carriers require HELP to be answered even after STOP; consent stays revoked.
    await _settle(container)
    await _reply(tenant, data, "STOP")
    await _reply(tenant, data, "info")
    await _settle(container)
    assert len(await _by_purpose(container, case_id, "help_reply")) == 2
    assert {e["action"] for e in await _consent(container, data["borrower_id"])} == {"revoke"}
    await _assert_blocked_for_consent(tenant, data)


# -- 4. Free text -------------------------------------------------------------------------------


@pytest.mark.parametrize("reply", ["stop texting me", "please don't call me again"])
async def test_free_text_revocation_is_honoured_and_flagged(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]], reply: str
) -> None:
    data = await _setup(tenant, container)
    case_id = data["case_id"]
    await _first_contact(tenant, container, data)
    queued = await _send(tenant, case_id, messageType="sms", body="Reminder.")
    await _reply(tenant, data, reply)
    await _settle(container, ["receipts"])

    (inbound,) = await _inbound(container, case_id)
    assert inbound[1:4] == ("received", reply, ["opt_out_detected"])
    ledger = await _consent(container, data["borrower_id"])
    assert sorted(e["channel"] for e in ledger) == PHONE_MEDIA
    for entry in ledger:
        assert (entry["action"], entry["source"]) == ("revoke", "reply_text")
        assert entry["contact_point_id"] == data["phone_cp"]
        assert entry["source_message_id"] == inbound[0]
        assert entry["evidence"]["needsAgentReview"] is True
    report = (
        await tenant.client.get(f"/api/messages/{queued['messageId']}/delivery-report")
    ).json()
    assert report["status"] == "cancelled"
    assert report["events"][-1]["reason"] == "consent revoked (reply_text)"

    await _settle(container)
    (confirmation,) = await _by_purpose(container, case_id, "opt_out_confirmation")
    assert confirmation[1] == "sent"
    await _assert_blocked_for_consent(tenant, data)


@pytest.mark.parametrize("reply", ["I can't stop thinking about paying", "ok thanks"])
async def test_ordinary_replies_do_not_revoke(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]], reply: str
) -> None:
    data = await _setup(tenant, container)
    case_id = data["case_id"]
    await _first_contact(tenant, container, data)
    queued = await _send(tenant, case_id, messageType="sms", body="Reminder.")
    sent_before = len(provider_sends)
    await _reply(tenant, data, reply)
    await _settle(container)
    (inbound,) = await _inbound(container, case_id)
    assert inbound[1:4] == ("received", reply, [])
    assert await _consent(container, data["borrower_id"]) == []
    replies = await _rows(
        container,
        "SELECT purpose FROM messages WHERE case_id = %s AND purpose <> 'collection'",
        case_id,
    )
    assert replies == [("reply",)]  # the inbound message itself, nothing sent back
    assert (await _message(tenant, queued["messageId"]))["status"] == "sent"
    assert provider_sends[sent_before:] == [("sms", PHONE, provider_sends[-1][2])]


# -- 5. Unknown senders ----------------------------------------------------------------------------


async def test_reply_from_an_unknown_number_goes_to_the_team_queue_and_changes_no_consent(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]]
) -> None:
    data = await _setup(tenant, container)
    await _first_contact(tenant, container, data)
    sent_before = len(provider_sends)
    for body in ("STOP", "stop texting me", "HELP"):
        await _reply(tenant, data, body, sender="+13105550199")
    await _settle(container)
    assert await _scalar(container, "SELECT count(*) FROM webhook_receipts") == 3
    # Recorded on no case, for a person to look at (the inbox's team queue): no borrower
    # to act for, so no consent change and no confirmation.
    # (Each receipt is processed by its own job, so their order is not the webhooks'.)
    assert sorted(
        await _rows(
            container,
            "SELECT case_id, borrower_id, from_address, body FROM messages "
            "WHERE direction = 'inbound'",
        )
    ) == sorted((None, None, "+13105550199", b) for b in ("STOP", "stop texting me", "HELP"))
    assert await _scalar(container, "SELECT count(*) FROM consent_events") == 0
    assert (
        await _scalar(container, "SELECT count(*) FROM messages WHERE direction = 'outbound'") == 1
    )
    assert len(provider_sends) == sent_before
    jobs = await _rows(
        container,
        "SELECT status FROM procrastinate_jobs WHERE task_name = 'parley:process_inbound'",
    )
    assert jobs == [("succeeded",)] * 3
    # The known borrower is unaffected.
    msg = await _send(tenant, data["case_id"], messageType="sms", body="Hello.")
    assert msg["status"] == "queued"


async def test_badly_signed_inbound_is_refused_and_not_stored(tenant: Any, container: Any) -> None:
    data = await _setup(tenant, container)
    await _first_contact(tenant, container, data)
    raw = orjson.dumps(
        {"type": "inbound", "message_id": "sbx_forged", "from": PHONE, "body": "STOP"}
    )
    r = await tenant.client.post(
        f"/webhooks/sandbox/{data['accounts']['sms']}",
        content=raw,
        headers={SIGNATURE_HEADER: sign("not-the-secret", raw)},
    )
    assert r.status_code == 403
    await _settle(container)
    assert await _scalar(container, "SELECT count(*) FROM webhook_receipts") == 0
    assert await _consent(container, data["borrower_id"]) == []


# -- 6. Twilio --------------------------------------------------------------------------------


async def test_stop_by_twilio_inbound_sms(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    async with TwilioApiPeer() as peer:
        account = await factories.twilio_account(container, tenant.organization_id, peer)
        first = await _send(
            tenant, data["case_id"], messageType="sms", body="Balance due. Reply STOP to opt out."
        )
        await _settle(container)
        assert (await _message(tenant, first["messageId"]))["status"] == "sent"
        assert [m.to for m in peer.messages] == [PHONE]
        waiting = await _send(tenant, data["case_id"], messageType="sms", body="Reminder.")

        path = f"/webhooks/twilio/{account}"
        url = container.settings.base_url.rstrip("/") + path
        sid = "SM" + uuid.uuid4().hex
        params = {
            "AccountSid": DEFAULT_ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "Body": "Stop",
            "From": PHONE,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": OUR_NUMBER,
        }
        validator = RequestValidator(DEFAULT_AUTH_TOKEN)
        forged = await tenant.client.post(
            path,
            data=params,
            headers={"X-Twilio-Signature": validator.compute_signature(url + "x", params)},
        )
        assert forged.status_code == 403
        signature = validator.compute_signature(url, params)
        r = await tenant.client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        assert r.status_code == 200, r.text
        assert await _scalar(container, "SELECT count(*) FROM webhook_receipts") == 1
        await _settle(container, ["receipts"])

        (inbound,) = await _inbound(container, data["case_id"])
        assert inbound[1:] == ("received", "Stop", [], sid)
        api = await _message(tenant, inbound[0])
        assert (api["direction"], api["provider"], api["from"]) == ("inbound", "twilio", PHONE)
        ledger = await _consent(container, data["borrower_id"])
        assert sorted((e["channel"], e["action"], e["source"]) for e in ledger) == [
            (c, "revoke", "reply_keyword") for c in PHONE_MEDIA
        ]
        assert (await _message(tenant, waiting["messageId"]))["status"] == "cancelled"

        await _settle(container)
        (confirmation,) = await _by_purpose(container, data["case_id"], "opt_out_confirmation")
        assert confirmation[1] == "sent"
        assert [(m.to, m.body) for m in peer.messages] == [
            (PHONE, peer.messages[0].body),
            (PHONE, confirmation[4]),
        ]

        # The same webhook again (Twilio retries): a duplicate, nothing new.
        again = await tenant.client.post(
            path, data=params, headers={"X-Twilio-Signature": signature}
        )
        assert again.status_code == 200 and again.json()["duplicate"] is True
        await _assert_blocked_for_consent(tenant, data)
        await _settle(container)
        assert len(peer.messages) == 2
        assert len(await _inbound(container, data["case_id"])) == 1


# -- 8. Invariant 6 -------------------------------------------------------------------------------


async def test_consent_ledger_rows_cannot_be_updated_or_deleted(
    tenant: Any, container: Any, provider_sends: list[tuple[str, str, str]]
) -> None:
    data = await _setup(tenant, container)
    await _first_contact(tenant, container, data)
    await _reply(tenant, data, "STOP")
    await _settle(container)
    assert len(await _consent(container, data["borrower_id"])) == 3
    async with container.db.pool.connection() as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute("UPDATE consent_events SET action = 'grant'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute("UPDATE consent_events SET reason = 'edited' WHERE channel = 'sms'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute("DELETE FROM consent_events WHERE channel = 'sms'")
    ledger = await _consent(container, data["borrower_id"])
    assert [e["action"] for e in ledger] == ["revoke"] * 3
    await _assert_blocked_for_consent(tenant, data)


async def test_stop_from_a_borrower_without_a_case_still_revokes(
    tenant: Any, container: Any
) -> None:
    data = await _setup(tenant, container)
    r = await tenant.client.post(
        "/api/borrowers",
        json={
            "firstName": "Noor",
            "lastName": "Haddad",
            "address": {"country": "US"},
            "contactPoints": [{"type": "phone", "value": "+13125550188", "label": "mobile"}],
        },
    )
    assert r.status_code == 201, r.text
    borrower_id = r.json()["borrowerId"]
    await _reply(tenant, data, "STOP", sender="+13125550188")
    await _settle(container)
    rows = await _consent(container, borrower_id)
    assert {(c["channel"], c["action"], c["source"]) for c in rows} >= {
        ("sms", "revoke", "reply_keyword")
    }
    # No case to file the reply on: the reply is recorded for the team queue (no case),
    # and no confirmation goes out (a confirmation is a message on a case).
    assert await _rows(
        container,
        "SELECT direction, case_id, body FROM messages WHERE borrower_id = %s",
        borrower_id,
    ) == [("inbound", None, "STOP")]
