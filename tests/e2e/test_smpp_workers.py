"""SMPP through the API and real worker processes: each worker's listener supervisor
binds the account, sends go out on those binds, a receipt delivered on either bind moves
its message to `delivered`, a borrower's STOP is recorded and confirmed, and stopping
the workers unbinds cleanly."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import Any

from parley.peers.smpp_server import SmppServerPeer
from tests.support import factories
from tests.support.live import worker_process

PHONE = "+12025550123"


def _worker(database_url: str) -> subprocess.Popen[bytes]:
    return worker_process(
        database_url,
        {"PARLEY_LISTENER_POLL_SECONDS": "0.2", "PARLEY_WORKER_CONCURRENCY": "2"},
    )


async def _until(
    predicate: Any, workers: list[subprocess.Popen[bytes]], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert all(w.poll() is None for w in workers), "a worker died"
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_two_workers_share_an_smpp_account(tenant, container, database_url):
    data = await factories.borrower_with_case(container, tenant.organization_id, phone=PHONE)
    async with SmppServerPeer() as peer:
        r = await tenant.client.post(
            "/api/provider-accounts",
            json={
                "name": "smsc",
                "provider": "smpp",
                "channel": "sms",
                "isDefault": True,
                "config": {
                    "host": "127.0.0.1",
                    "port": peer.port,
                    "system_id": "parley",
                    "source_addr": "+18005550100",
                    "window": 5,
                    "throughput": 50,
                },
                "secrets": {"password": "secret1"},
            },
        )
        assert r.status_code == 201, r.text
        assert "password" not in r.text.replace('"secretsSet":["password"]', "")
        workers = [_worker(database_url) for _ in range(2)]
        try:
            await _until(lambda: _true(len(peer.sessions) == 2), workers)
            ids = []
            for n in range(4):
                r = await tenant.client.post(
                    f"/api/cases/{data['case_id']}/messages",
                    json={"messageType": "sms", "body": f"Reminder {n}: payment due."},
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["messageId"])

            async def statuses() -> list[str]:
                return [
                    (await tenant.client.get(f"/api/messages/{i}")).json()["status"] for i in ids
                ]

            await _until(lambda: _all(statuses, "sent"), workers)
            assert len(peer.binds) == 2, "sends used the listeners' binds"
            # SMSCs deliver receipts on any bind of the account: all on one of them.
            session = next(iter(peer.sessions))
            for submission in peer.submissions:
                assert (
                    await peer.deliver_receipt(submission.message_id or "", session_id=session) == 0
                )
            await _until(lambda: _all(statuses, "delivered"), workers)

            other = list(peer.sessions)[-1]
            assert await peer.send_mo("STOP", source_addr=PHONE[1:], session_id=other) == [0]

            async def confirmed() -> bool:
                async with container.db.pool.connection() as conn:
                    cur = await conn.execute(
                        "SELECT status FROM messages WHERE case_id = %s "
                        "AND purpose = 'opt_out_confirmation'",
                        (data["case_id"],),
                    )
                    return [r[0] for r in await cur.fetchall()] == ["sent"]

            await _until(confirmed, workers)
            assert peer.submissions[-1].destination_addr == PHONE[1:]
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                # Off the event loop: the peer (in this loop) must keep answering.
                await asyncio.to_thread(w.wait, 30)
        assert [w.returncode for w in workers] == [0, 0]
        assert peer.seen["unbind"] == 2, "each worker unbinds on shutdown"


async def _true(value: bool) -> bool:
    return value


async def _all(statuses: Any, wanted: str) -> bool:
    return all(s == wanted for s in await statuses())
