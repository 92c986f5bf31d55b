"""Live updates across processes (docs/deployment.md): two `parley api` processes and a
`parley worker` on one PostgreSQL. A borrower's reply posted to API process A is handled
by the worker, and the SSE stream a client holds open on API process B pushes it:
LISTEN/NOTIFY is the only thing the processes share."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from parley.channels.sandbox.provider import SIGNATURE_HEADER, sign
from tests.conftest import make_tenant
from tests.support import factories
from tests.support.live import free_port, worker_process

# Only so that a failure cannot hang the suite; nothing here measures time.
GENEROUS = 60.0


def _api(database_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "parley.cli", "api"],
        env={**os.environ, "PARLEY_DATABASE_URL": database_url, "PARLEY_PORT": str(port)},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def _healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + GENEROUS
    async with httpx.AsyncClient() as client:
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                r = await client.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.2)


async def _first_received(lines: Any) -> dict[str, Any]:
    kind = None
    async for line in lines:
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:") and kind == "message.received":
            return dict(orjson.loads(line[5:].strip()))
    raise AssertionError("the stream ended without a message.received event")


async def test_a_reply_posted_to_one_api_process_is_pushed_by_another(
    container, database_url, tmp_path
):
    tenant = await make_tenant(container)
    await tenant.client.aclose()
    pat = await factories.borrower_with_case(container, tenant.organization_id)
    accounts = await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    ports = [free_port(), free_port()]
    apis = [_api(database_url, p, tmp_path / f"api-{i}.log") for i, p in enumerate(ports)]
    worker = worker_process(database_url, {}, tmp_path / "worker.log")
    try:
        for port, proc, i in zip(ports, apis, range(2), strict=True):
            await _healthy(port, proc, tmp_path / f"api-{i}.log")
        a, b = (f"http://127.0.0.1:{p}" for p in ports)
        headers = {"Authorization": f"Bearer {tenant.token}"}
        async with (
            httpx.AsyncClient(timeout=GENEROUS) as client,
            client.stream("GET", f"{b}/api/events/stream", headers=headers) as stream,
        ):
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            assert (await asyncio.wait_for(anext(lines), GENEROUS)).startswith("retry:")

            raw = orjson.dumps(
                {
                    "id": str(uuid.uuid4()),
                    "type": "inbound",
                    "message_id": "sbx_" + uuid.uuid4().hex,
                    "channel": "sms",
                    "from": pat["phone"],
                    "to": "+18005550100",
                    "body": "Paid it this morning",
                    "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                }
            )
            r = await client.post(
                f"{a}/webhooks/sandbox/{accounts['sms']}",
                content=raw,
                headers={SIGNATURE_HEADER: sign(accounts["secret"], raw)},
            )
            assert r.status_code == 200, r.text
            event = await asyncio.wait_for(_first_received(lines), GENEROUS)
        assert event["type"] == "message.received"
        assert event["data"]["caseId"] == str(pat["case_id"])
        assert event["data"]["preview"] == "Paid it this morning"
        # And it is in the agent's inbox, as read through process A.
        async with httpx.AsyncClient(headers=headers) as client:
            r = await client.get(f"{a}/api/inbox", params={"agent": str(pat["agent_id"])})
        assert r.status_code == 200, r.text
        (conv,) = r.json()["conversations"]
        assert conv["lastMessage"]["messageId"] == event["data"]["messageId"]
        assert conv["unreadCount"] == 1

        # A stream still open at shutdown is ended by the server, which then exits.
        async with (
            httpx.AsyncClient(timeout=GENEROUS) as client,
            client.stream("GET", f"{b}/api/events/stream", headers=headers) as held,
        ):
            lines = held.aiter_lines()
            assert (await asyncio.wait_for(anext(lines), GENEROUS)).startswith("retry:")
            apis[1].send_signal(signal.SIGTERM)
            rest = await asyncio.wait_for(_until_end(lines), GENEROUS)
        assert all(line == "" or line.startswith(":") for line in rest)
        await asyncio.to_thread(apis[1].wait, GENEROUS)
        assert apis[1].returncode == 0
    finally:
        for proc in (*apis, worker):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (*apis, worker):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise


async def _until_end(lines: Any) -> list[str]:
    return [line async for line in lines]
