"""SMPP end to end inside Parley: the worker's listener supervisor keeps the account's
bind up, the dispatcher sends on that same bind, delivery receipts move the message to
`delivered` through the receipts machinery, and a borrower's reply lands on the case via
`inbox/inbound.handle` (a STOP is honoured and confirmed over SMPP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from parley.channels.sandbox.provider import SandboxProvider
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
    # identifies the message.
    assert len(peer.submissions) == message["segments"] == 2
    submission = peer.submissions[0]
    assert message["providerMessageId"] == submission.message_id
    assert submission.destination_addr == PHONE[1:]
    assert peer.binds == ["parley"], "sends use the listener's bind, not one of their own"

    # The receipt is stored and applied before the SMSC gets its deliver_sm_resp.
    assert await peer.deliver_receipt(submission.message_id or "", "DELIVRD") == 0
    report = (await tenant.client.get(f"/api/messages/{message_id}/delivery-report")).json()
    assert report["status"] == "delivered"
    assert [e["event"] for e in report["events"] if e["source"] == "provider"] == ["delivered"]
    [(url, headers)] = await _rows(
        container,
        "SELECT url, headers FROM webhook_receipts WHERE provider_account_id = %s",
        account,
    )
    assert url == f"listener://smpp/{account}"
    assert headers["content-type"] == "application/vnd.parley.smpp-pdus"
    # The same receipt offered again (the SMSC renumbers it) is a duplicate.
    assert await peer.deliver_receipt(submission.message_id or "", "DELIVRD") == 0
    assert len(await _rows(container, "SELECT id FROM webhook_receipts")) == 1
    assert await receipts.replay(container, account_id=str(account)) == (1, 0)

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
    assert await receipts.replay(container, account_id=str(account)) == (2, 0)
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
