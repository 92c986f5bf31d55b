"""The demo's inbox is populated: borrowers' replies on each channel are unread in their
agents' conversations and an unknown number waits in the team queue."""

from __future__ import annotations

from typing import Any

import httpx

from parley.demo import ensure_demo


async def test_demo_inbox_has_unread_replies_on_every_channel(container: Any) -> None:
    from parley.api.app import create_app

    info = await ensure_demo(container, reset_token=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container)),
        base_url="http://demo",
        headers={"Authorization": f"Bearer {info.token}"},
    ) as client:
        r = await client.get("/api/inbox", params={"unread": "true", "limit": 200})
        assert r.status_code == 200, r.text
        unread = r.json()["conversations"]
        assert {c["channel"] for c in unread} == {"email", "sms", "whatsapp"}
        assert all(c["unreadCount"] == 1 for c in unread)
        assert sum(1 for c in unread if c["assignedAgentId"]) >= 6
        team = [c for c in unread if c["caseId"] is None]
        assert [c["senderAddress"] for c in team] == ["+13125550142"]
        # The reply is on the borrower's timeline too.
        first = next(c for c in unread if c["borrowerId"] and c["caseId"])
        r = await client.get(f"/api/borrowers/{first['borrowerId']}/timeline")
        assert r.status_code == 200, r.text
        assert r.json()["items"][0]["messageId"] == first["lastMessage"]["messageId"]
