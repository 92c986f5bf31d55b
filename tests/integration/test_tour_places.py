"""Every place the tour test's borrower may live (tests/support/places.py) is contactable
by text and email at midday there: its timezone, address and phone number agree, and
nothing but the hour would defer a message (the CLI tour test picks one by the hour)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support.compliance import Clock
from tests.support.places import PLACES, tour_borrower, tour_case


@pytest.mark.parametrize(("timezone", "country", "phone"), PLACES)
async def test_each_place_is_contactable_at_midday(
    tenant: Any, container: Any, monkeypatch: Any, timezone: str, country: str, phone: str
) -> None:
    midday = datetime(2026, 11, 24, 12, 0, tzinfo=ZoneInfo(timezone))
    monkeypatch.setattr(container, "clock", Clock(midday))
    b = await tenant.client.post("/api/borrowers", json=tour_borrower((timezone, country, phone)))
    assert b.status_code == 201, b.text
    c = await tenant.client.post(
        "/api/cases", json=tour_case(b.json()["borrowerId"], f"TOUR-{country}")
    )
    assert c.status_code == 201, c.text
    for channel in ("sms", "email"):
        r = await tenant.client.get(
            f"/api/cases/{c.json()['caseId']}/contactability", params={"channel": channel}
        )
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "allow", (channel, r.json())
