"""Helpers for the compliance gate's tests: wall-clock instants, a settable clock, and a
US borrower with an explicit time zone, a mobile number (and optionally an email) on a
case."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from parley.storage.models import Borrower, Case, CaseBorrower, ContactPoint


def at(zone: ZoneInfo, *args: int) -> datetime:
    """A wall-clock time in ``zone``, as an aware UTC instant."""
    return datetime(*args, tzinfo=zone).astimezone(UTC)  # type: ignore[misc]


def ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


class Clock:
    """Set as ``container.clock`` (monkeypatch) so the API and in-process dispatchers
    share a controllable "now"."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def us_borrower(
    container: Any,
    org_id: uuid.UUID,
    *,
    timezone: str | None = "America/New_York",
    region: str = "NY",
    phone: str = "+12125550123",
    email: str | None = None,
    case_status: str = "open",
    amount: str = "900.00",
) -> dict[str, Any]:
    """A borrower in the US with a mobile number (and ``email`` when given) and a case."""
    async with container.db.session() as s:
        b = Borrower(
            organization_id=org_id,
            first_name="Pat",
            last_name="Doe",
            timezone=timezone,
            preferred_language="en_US",
            address={"country": "US", "region": region},
        )
        s.add(b)
        await s.flush()
        mobile = ContactPoint(
            organization_id=org_id,
            borrower_id=b.id,
            kind="phone",
            value=phone,
            label="mobile",
            is_primary=True,
        )
        mail = None
        if email is not None:
            mail = ContactPoint(
                organization_id=org_id, borrower_id=b.id, kind="email", value=email, is_primary=True
            )
            s.add(mail)
        s.add(mobile)
        case = Case(
            organization_id=org_id,
            case_number=f"C-{uuid.uuid4().hex[:8]}",
            creditor="Harbor Bank",
            original_amount=Decimal(amount),
            outstanding_amount=Decimal(amount),
            currency="USD",
            status=case_status,
        )
        s.add(case)
        await s.flush()
        s.add(CaseBorrower(case_id=case.id, borrower_id=b.id, organization_id=org_id))
        await s.commit()
        out: dict[str, Any] = {
            "borrower_id": str(b.id),
            "case_id": str(case.id),
            "phone_id": str(mobile.id),
            "phone": phone,
        }
        if mail is not None:
            out.update(email_id=str(mail.id), email=email)
        return out
