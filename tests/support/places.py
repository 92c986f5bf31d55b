"""Places a test borrower can live so that it is daytime for them now: the gate defers
anything outside 08:00-21:00 in the borrower's local time, by every location signal
(timezone, address, phone number), so each place has all three consistent. At any hour
one of them has daytime."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

PLACES = (
    ("America/Chicago", "US", "(312) 555-0142"),
    ("Europe/Berlin", "DE", "+49 30 23125000"),
    ("Asia/Tokyo", "JP", "+81 3-3224-5000"),
)


def daytime_place(now: datetime | None = None) -> tuple[str, str, str]:
    """(timezone, country, phone) of the first place where it is 09:00-20:00 now."""
    for place in PLACES:
        local = (now or datetime.now(ZoneInfo(place[0]))).astimezone(ZoneInfo(place[0]))
        if 9 <= local.hour < 20:
            return place
    raise AssertionError("no place in PLACES has daytime now")


def tour_borrower(place: tuple[str, str, str]) -> dict[str, object]:
    """The README tour's borrower (`POST /api/borrowers`), living at `place`."""
    timezone, country, phone = place
    return {
        "firstName": "Dana",
        "lastName": "Reyes",
        "timezone": timezone,
        "preferredLanguage": "en_US",
        "address": {"country": country},
        "contactPoints": [
            {"type": "email", "value": "dana@example.com"},
            {"type": "phone", "value": phone, "label": "mobile"},
        ],
    }


def tour_case(borrower_id: str, case_number: str = "TOUR-1") -> dict[str, object]:
    """The README tour's case (`POST /api/cases`) for that borrower."""
    return {
        "caseNumber": case_number,
        "creditor": "Harbor Bank",
        "originalAmount": "900.00",
        "outstandingAmount": "640.25",
        "currency": "USD",
        "dueDate": "2026-10-01",
        "borrowerIds": [borrower_id],
    }
