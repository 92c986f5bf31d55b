"""SMPP end to end inside Parley: the worker's listener supervisor keeps the account's
bind up, the dispatcher sends on that same bind, delivery receipts move the message to
`delivered` through the receipts machinery, and a borrower's reply lands on the case via
`inbox/inbound.handle` (a STOP is honoured and confirmed over SMPP)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from parley.channels.sandbox.provider import SandboxProvider
from parley.channels.smpp import pdu
from parley.domain.channels import Channel
from parley.inbox import receipts
from parley.inbox.listeners import ListenerSupervisor
from parley.peers.smpp_server import SmppServerPeer
from tests.support import factories
from tests.support.live import drain, wait_for

PHONE = "+12025550123"
OUR_NUMBER = "+18005550100"


async def _rows(container: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


async def _settle(container: Any) -> None:
    for _ in range(10):
        await drain(container, ["dispatch", "receipts"])
        [(ready,)] = await _rows(
            container,
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' "
            "AND queue_name = ANY(%s) AND (scheduled_at IS NULL OR scheduled_at <= now())",
            ["dispatch", "receipts"],
        )
        if not ready:
            return
    raise AssertionError("jobs kept coming")


async def _true(value: Any) -> Any:
    return value


@pytest.fixture
async def peer() -> AsyncIterator[SmppServerPeer]:
    async with SmppServerPeer() as server:
        yield server


@pytest.fixture
async def supervisor(container: Any) -> AsyncIterator[ListenerSupervisor]:
    sup = ListenerSupervisor(container, poll_seconds=0.1, restart_min=0.01, restart_max=0.05)
    task = asyncio.create_task(sup.run())
    yield sup
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _smpp_account(container: Any, org_id: Any, peer: SmppServerPeer) -> Any:
    return await factories.account(
        container,
        org_id,
        "smpp",
        Channel.SMS,
        config={
            "host": "127.0.0.1",
            "port": peer.port,
            "system_id": "parley",
            "source_addr": OUR_NUMBER,
            "throughput": 200,
            "reconnect_min": 0.05,
            "reconnect_max": 0.2,
        },
        secrets_={"password": "secret1"},
    )


async def test_send_receipt_and_reply_through_the_listener(
    tenant: Any, container: Any, peer: SmppServerPeer, supervisor: ListenerSupervisor
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id, phone=PHONE)
    account = await _smpp_account(container, tenant.organization_id, peer)
    await peer.wait_bound()  # the supervisor bound before anything was sent
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages",
        json={"messageType": "sms", "body": "Your balance is due. Reply STOP to opt out."},
    )
    assert r.status_code == 201, r.text
    message_id = r.json()["messageId"]
    await _settle(container)
    message = (await tenant.client.get(f"/api/messages/{message_id}")).json()
    assert message["status"] == "sent"
    # With the debt-collector disclosure the text takes two parts; the first part's id
    # identifies the message, and each part's receipt counts.
    assert len(peer.submissions) == message["segments"] == 2
    submission, second = peer.submissions
    assert message["providerMessageId"] == submission.message_id
    assert submission.destination_addr == PHONE[1:]
    assert peer.binds == ["parley"], "sends use the listener's bind, not one of their own"

    # A receipt is stored and applied before the SMSC gets its deliver_sm_resp.
    assert await peer.deliver_receipt(submission.message_id or "", "DELIVRD") == 0
    report = (await tenant.client.get(f"/api/messages/{message_id}/delivery-report")).json()
    assert report["status"] == "sent", "half the message is not the message"
    assert await peer.deliver_receipt(second.message_id or "", "DELIVRD") == 0
    report = (await tenant.client.get(f"/api/messages/{message_id}/delivery-report")).json()
    assert report["status"] == "delivered"
    provider_events = [e for e in report["events"] if e["source"] == "provider"]
    assert [(e["event"], e["part"]) for e in provider_events] == [
        ("delivered", 1),
        ("delivered", 2),
    ]
    receipt_rows = await _rows(
        container,
        "SELECT url, headers FROM webhook_receipts WHERE provider_account_id = %s",
        account,
    )
    assert len(receipt_rows) == 2
    for url, headers in receipt_rows:
        assert url == f"listener://smpp/{account}"
        assert headers["content-type"] == "application/vnd.parley.smpp-pdus"
    # The same receipt offered again (the SMSC renumbers it) is a duplicate.
    assert await peer.deliver_receipt(submission.message_id or "", "DELIVRD") == 0
    assert len(await _rows(container, "SELECT id FROM webhook_receipts")) == 2
    assert await receipts.replay(container, account_id=str(account)) == (2, 0)

    # The borrower replies STOP: recorded on the case, consent revoked, confirmed by SMPP.
    assert await peer.send_mo("STOP", source_addr=PHONE[1:], destination_addr="18005550100") == [0]
    await _settle(container)
    inbound = await _rows(
        container,
        "SELECT body, from_address, provider FROM messages "
        "WHERE case_id = %s AND direction = 'inbound'",
        data["case_id"],
    )
    assert inbound == [("STOP", PHONE, "smpp")]
    revoked = await _rows(
        container,
        "SELECT channel FROM consent_events WHERE borrower_id = %s AND action = 'revoke'",
        data["borrower_id"],
    )
    assert ("sms",) in revoked
    await wait_for(lambda: _true(len(peer.submissions) > 2))
    confirmation = peer.submissions[2]
    assert confirmation.destination_addr == PHONE[1:]
    confirmations = await _rows(
        container,
        "SELECT status, provider_message_id FROM messages WHERE case_id = %s "
        "AND purpose = 'opt_out_confirmation'",
        data["case_id"],
    )
    assert confirmations == [("sent", confirmation.message_id)]
    assert peer.binds == ["parley"]
    assert await receipts.replay(container, account_id=str(account)) == (3, 0)
    assert len(await _rows(container, "SELECT id FROM messages WHERE direction = 'inbound'")) == 1

    # Disabling the account stops its listener and unbinds.
    async with container.db.pool.connection() as conn:
        await conn.execute("UPDATE provider_accounts SET enabled = false WHERE id = %s", (account,))
    supervisor.poke()
    await wait_for(lambda: _true(str(account) not in supervisor.listening))
    await wait_for(lambda: _true(peer.seen["unbind"] >= 1))


async def test_a_receipt_ahead_of_our_bookkeeping_is_stored_and_retried(
    tenant: Any, container: Any, peer: SmppServerPeer, supervisor: ListenerSupervisor
) -> None:
    account = await _smpp_account(container, tenant.organization_id, peer)
    await peer.wait_bound()
    # No message carries this id yet (the receipt beat the dispatcher's commit): the
    # receipt is still acknowledged, stored, and a retry job re-reads it later.
    assert await peer.deliver_receipt("feedbeef", "DELIVRD") == 0
    [(body,)] = await _rows(
        container, "SELECT body FROM webhook_receipts WHERE provider_account_id = %s", account
    )
    assert b"id:feedbeef" in bytes(body)
    jobs = await _rows(
        container,
        "SELECT status FROM procrastinate_jobs WHERE task_name = 'parley:process_receipt'",
    )
    assert jobs == [("todo",)]


async def test_an_account_created_later_is_picked_up_and_a_dropped_link_rebinds(
    tenant: Any, container: Any, peer: SmppServerPeer, supervisor: ListenerSupervisor
) -> None:
    await wait_for(lambda: _true(True))
    assert supervisor.listening == {}
    account = await _smpp_account(container, tenant.organization_id, peer)
    supervisor.poke()
    await peer.wait_bound()
    assert str(account) in supervisor.listening
    peer.drop_links()
    await wait_for(lambda: _true(len(peer.binds) == 2))
    await wait_for(lambda: _true(len(peer.sessions) == 1))


# -- long messages: every part has its own SMSC id and its own receipt ----------------

# 260 GSM-7 characters plus the debt-collector disclosure: three parts of at most 153.
LONG_BODY = "Balance due. " * 20


async def _send_long(tenant: Any, container: Any, case_id: Any) -> tuple[str, list[str]]:
    """Send LONG_BODY through the dispatcher: the message id and its parts' SMSC ids."""
    r = await tenant.client.post(
        f"/api/cases/{case_id}/messages", json={"messageType": "sms", "body": LONG_BODY}
    )
    assert r.status_code == 201, r.text
    message_id = r.json()["messageId"]
    await _settle(container)
    parts = await _rows(
        container,
        "SELECT part, provider_message_id, status FROM message_parts "
        "WHERE message_id = %s ORDER BY part",
        message_id,
    )
    return message_id, [pid for _, pid, _ in parts]


async def _status(tenant: Any, message_id: str) -> tuple[str, str | None]:
    m = (await tenant.client.get(f"/api/messages/{message_id}")).json()
    return m["status"], m.get("errorCode")


async def test_a_long_message_is_delivered_once_every_part_is_in_any_order(
    tenant: Any, container: Any, peer: SmppServerPeer, supervisor: ListenerSupervisor
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id, phone=PHONE)
    account = await _smpp_account(container, tenant.organization_id, peer)
    await peer.wait_bound()
    message_id, part_ids = await _send_long(tenant, container, data["case_id"])
    # The dispatcher recorded every part's id, in the order the SMSC got the parts.
    assert len(peer.submissions) == 3
    assert part_ids == [s.message_id for s in peer.submissions]
    assert [s.udh[-2:] for s in peer.submissions] == [b"\x03\x01", b"\x03\x02", b"\x03\x03"]
    message = (await tenant.client.get(f"/api/messages/{message_id}")).json()
    assert (message["status"], message["segments"]) == ("sent", 3)
    assert message["providerMessageId"] == part_ids[0]

    done = "2611221200"
    for n in (3, 1):  # the last part first, then the first: still half a message
        assert await peer.deliver_receipt(part_ids[n - 1], "DELIVRD", done=done) == 0
        assert await _status(tenant, message_id) == ("sent", None)
    assert await peer.deliver_receipt(part_ids[1], "DELIVRD", done=done) == 0
    assert await _status(tenant, message_id) == ("delivered", None)

    # Duplicates: the same PDU offered again (renumbered) is one stored receipt; the same
    # receipt in another shape (with the receipted_message_id/message_state TLVs) is a
    # receipt of its own whose event is already stored.
    assert await peer.deliver_receipt(part_ids[1], "DELIVRD", done=done) == 0
    assert await peer.deliver_receipt(part_ids[0], "DELIVRD", done=done, with_tlvs=True) == 0
    report = (await tenant.client.get(f"/api/messages/{message_id}/delivery-report")).json()
    assert report["status"] == "delivered"
    provider_events = [e for e in report["events"] if e["source"] == "provider"]
    assert sorted(e["part"] for e in provider_events) == [1, 2, 3]
    assert [e["status"] for e in provider_events] == ["sent", "sent", "delivered"]
    assert [(p["part"], p["providerMessageId"], p["status"]) for p in report["parts"]] == [
        (1, part_ids[0], "delivered"),
        (2, part_ids[1], "delivered"),
        (3, part_ids[2], "delivered"),
    ]
    [(delivered_at,)] = await _rows(
        container, "SELECT delivered_at FROM messages WHERE id = %s", message_id
    )
    assert delivered_at is not None
    assert len(await _rows(container, "SELECT id FROM webhook_receipts")) == 4
    # Replays (and the stored receipts' own retries) resolve every part again and
    # change nothing.
    assert await receipts.replay(container, account_id=str(account)) == (4, 0)
    assert await receipts.replay(container) == (4, 0)
    again = (await tenant.client.get(f"/api/messages/{message_id}/delivery-report")).json()
    assert again == report


async def test_one_undeliverable_part_fails_the_message_with_its_error(
    tenant: Any, container: Any, peer: SmppServerPeer, supervisor: ListenerSupervisor
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id, phone=PHONE)
    await _smpp_account(container, tenant.organization_id, peer)
    await peer.wait_bound()
    message_id, part_ids = await _send_long(tenant, container, data["case_id"])
    assert len(part_ids) == 3
    assert await peer.deliver_receipt(part_ids[0], "DELIVRD", done="2611221200") == 0
    assert await _status(tenant, message_id) == ("sent", None)
    # Part 2 undeliverable: the message fails at once, with that part's error ...
    assert await peer.deliver_receipt(part_ids[1], "UNDELIV", err="034", done="2611221201") == 0
    assert await _status(tenant, message_id) == ("failed", "034")
    # ... and stays failed when the other parts arrive, one of them failing too.
    assert await peer.deliver_receipt(part_ids[2], "EXPIRED", err="027", done="2611221202") == 0
    assert await _status(tenant, message_id) == ("failed", "034")
    report = (await tenant.client.get(f"/api/messages/{message_id}/delivery-report")).json()
    assert [(p["part"], p["status"], p["errorCode"]) for p in report["parts"]] == [
        (1, "delivered", None),
        (2, "failed", "034"),
        (3, "failed", "027"),
    ]
    moves = [
        (e["part"], e["status"])
        for e in report["events"]
        if e["source"] == "provider" and e["status"] == "failed"
    ]
    assert moves == [(2, "failed"), (3, "failed")]
    changed = await _rows(
        container,
        "SELECT part, status_before, status_after FROM message_events WHERE message_id = %s "
        "AND source = 'provider' AND status_after <> status_before",
        message_id,
    )
    assert changed == [(2, "sent", "failed")], "one transition, by the failing part"
    # A carrier that reports a failure and later the delivery did deliver (as for any
    # message, status_after_event): once the two failed parts are delivered after all,
    # every part is, and so is the message.
    assert await peer.deliver_receipt(part_ids[1], "DELIVRD", done="2611221210") == 0
    assert await _status(tenant, message_id) == ("failed", "034")
    assert await peer.deliver_receipt(part_ids[2], "DELIVRD", done="2611221211") == 0
    assert (await _status(tenant, message_id))[0] == "delivered"


async def test_concurrent_part_receipts_deliver_the_message_once(
    tenant: Any, container: Any, peer: SmppServerPeer, supervisor: ListenerSupervisor
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id, phone=PHONE)
    await _smpp_account(container, tenant.organization_id, peer)
    await peer.wait_bound()
    sent = [await _send_long(tenant, container, data["case_id"]) for _ in range(3)]
    # Every part of every message at once, shuffled, some twice: each deliver_sm is
    # stored and applied in its own transaction, concurrently with the others.
    receipts_ = [pid for _, part_ids in sent for pid in part_ids]
    receipts_ += receipts_[::4]
    random.Random(5).shuffle(receipts_)
    answers = await asyncio.gather(
        *(peer.deliver_receipt(pid, "DELIVRD", done="2611221200") for pid in receipts_)
    )
    assert answers == [0] * len(receipts_)
    for message_id, _ in sent:
        assert await _status(tenant, message_id) == ("delivered", None)
        rows = await _rows(
            container,
            "SELECT count(*), count(*) FILTER (WHERE status_after <> status_before) "
            "FROM message_events WHERE message_id = %s AND source = 'provider'",
            message_id,
        )
        assert rows == [(3, 1)]


async def test_a_part_receipt_ahead_of_our_bookkeeping_is_applied_by_its_retry(
    tenant: Any, container: Any, peer: SmppServerPeer, supervisor: ListenerSupervisor
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id, phone=PHONE)
    await _smpp_account(container, tenant.organization_id, peer)
    await peer.wait_bound()
    # The peer numbers message ids 1, 2, 3...: part 2's receipt arrives before the
    # dispatcher recorded the parts (it matches nothing yet and is retried).
    assert await peer.deliver_receipt("00000002", "UNDELIV", err="001") == 0
    [(receipt_id,)] = await _rows(container, "SELECT id FROM webhook_receipts")
    message_id, part_ids = await _send_long(tenant, container, data["case_id"])
    assert part_ids[1] == "00000002"
    assert await _status(tenant, message_id) == ("sent", None)
    await receipts.process_stored_receipt(container, receipt_id, 0)  # the retry job's work
    assert await _status(tenant, message_id) == ("failed", "001")


@pytest.mark.parametrize(("resolution", "settled"), [("sent", "sent"), ("not_sent", "failed")])
async def test_a_half_accepted_message_needs_review_and_keeps_its_parts_receipts(
    tenant: Any,
    container: Any,
    peer: SmppServerPeer,
    supervisor: ListenerSupervisor,
    resolution: str,
    settled: str,
) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id, phone=PHONE)
    account = await _smpp_account(container, tenant.organization_id, peer)
    await peer.wait_bound()
    # Parts 1 and 2 accepted, part 3 refused: the handset may hold two thirds of it.
    peer.script("accept", "accept", pdu.Status.ESME_RINVDSTADR)
    message_id, part_ids = await _send_long(tenant, container, data["case_id"])
    assert [s.status for s in peer.submissions] == [0, 0, pdu.Status.ESME_RINVDSTADR]
    # The accepted parts' ids are recorded all the same; part 1's names the message.
    assert part_ids == [s.message_id for s in peer.submissions[:2]]
    message = (await tenant.client.get(f"/api/messages/{message_id}")).json()
    assert (message["status"], message["errorCode"]) == ("needs_review", "ESME_RINVDSTADR")
    assert message["providerMessageId"] == part_ids[0]

    # Their receipts are the reviewer's evidence: stored on the message with the SMSC's
    # status and the part, moving the parts but not the message -- every *recorded*
    # part delivered is not the message delivered (part 3 never went), and no receipt
    # settles what a person has to.
    assert await peer.deliver_receipt(part_ids[0], "DELIVRD", done="2611221200") == 0
    assert await _status(tenant, message_id) == ("needs_review", "ESME_RINVDSTADR")
    assert await peer.deliver_receipt(part_ids[1], "DELIVRD", done="2611221201") == 0
    assert await peer.deliver_receipt(part_ids[1], "UNDELIV", err="034", done="2611221202") == 0
    report = (await tenant.client.get(f"/api/messages/{message_id}/delivery-report")).json()
    assert (report["status"], report["providerMessageId"]) == ("needs_review", part_ids[0])
    assert [
        (e["event"], e["part"], e["providerStatus"], e["status"])
        for e in report["events"]
        if e["source"] == "provider"
    ] == [
        ("delivered", 1, "DELIVRD", "needs_review"),
        ("delivered", 2, "DELIVRD", "needs_review"),
        ("failed", 2, "UNDELIV", "needs_review"),
    ]
    assert [(p["part"], p["providerMessageId"], p["status"]) for p in report["parts"]] == [
        (1, part_ids[0], "delivered"),
        (2, part_ids[1], "delivered"),
    ]
    # Replayed, every receipt matches the message (none unmatched) and moves nothing.
    assert await receipts.replay(container, account_id=str(account)) == (3, 0)
    assert await _status(tenant, message_id) == ("needs_review", "ESME_RINVDSTADR")

    # The reviewer settles it, with the receipts at hand.
    r = await tenant.client.post(
        f"/api/messages/{message_id}/resolve-review",
        json={"resolution": resolution, "note": "parts 1-2 delivered"},
    )
    assert r.status_code == 200 and r.json()["status"] == settled
    # Later receipts of its parts (an SMSC repeating them) are stored but never overturn
    # the reviewer: every recorded part delivered is still not the whole message.
    assert await peer.deliver_receipt(part_ids[0], "DELIVRD", done="2611221300") == 0
    assert await peer.deliver_receipt(part_ids[1], "DELIVRD", done="2611221301") == 0
    report = (await tenant.client.get(f"/api/messages/{message_id}/delivery-report")).json()
    assert report["status"] == settled
    assert [e["providerStatus"] for e in report["events"] if e["source"] == "provider"][-2:] == [
        "DELIVRD",
        "DELIVRD",
    ]


# -- the supervisor with a fake listening provider ------------------------------------


class _Runs:
    def __init__(self) -> None:
        self.active: set[int] = set()
        self.peak = 0
        self.started = 0
        self.fail_first = 0


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> _Runs:
    """SandboxProvider made a listening provider that needs exclusivity (like IMAP)."""
    state = _Runs()

    async def run(self: SandboxProvider, sink: Any) -> None:
        state.started += 1
        if state.fail_first:
            state.fail_first -= 1
            raise RuntimeError("mailbox unreachable")
        token = id(asyncio.current_task())
        state.active.add(token)
        state.peak = max(state.peak, len(state.active))
        try:
            await asyncio.Event().wait()
        finally:
            state.active.discard(token)

    monkeypatch.setattr(SandboxProvider, "run", run, raising=False)
    monkeypatch.setattr(SandboxProvider, "listen_exclusively", True, raising=False)
    return state


async def test_exclusive_listeners_run_in_one_process_and_fail_over(
    tenant: Any, container: Any, runs: _Runs
) -> None:
    await factories.sandbox_accounts(container, tenant.organization_id)  # 3 accounts
    first = ListenerSupervisor(container, poll_seconds=0.05)
    second = ListenerSupervisor(container, poll_seconds=0.05)
    first_task = asyncio.create_task(first.run())
    await wait_for(lambda: _true(len(runs.active) == 3))
    second_task = asyncio.create_task(second.run())
    await asyncio.sleep(0.3)  # several polls: the locks stay with the first
    assert second.listening == {} and runs.peak == 3
    first_task.cancel()
    await asyncio.gather(first_task, return_exceptions=True)
    await wait_for(lambda: _true(len(second.listening) == 3 and len(runs.active) == 3))
    second_task.cancel()
    await asyncio.gather(second_task, return_exceptions=True)
    assert runs.active == set()


async def test_a_failing_listener_is_restarted(tenant: Any, container: Any, runs: _Runs) -> None:
    runs.fail_first = 2
    await factories.account(
        container,
        tenant.organization_id,
        "sandbox",
        Channel.SMS,
        config={"from_number": OUR_NUMBER},
        secrets_={"signing_secret": "s3cret"},
    )
    sup = ListenerSupervisor(container, poll_seconds=5, restart_min=0.01, restart_max=0.02)
    task = asyncio.create_task(sup.run())
    try:
        await wait_for(lambda: _true(len(runs.active) == 1))
        assert runs.started == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert runs.active == set()
