"""The 24-hour window's state: our clock, and Meta's 131047 over it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from parley.services.whatsapp_window import WindowState

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
PHONE = "+12025550123"


def test_open_for_24_hours_after_the_last_inbound() -> None:
    assert WindowState(NOW - timedelta(hours=23), NOW).is_open
    assert not WindowState(NOW - timedelta(hours=24), NOW).is_open
    assert not WindowState(None, NOW).is_open


def test_metas_131047_closes_it_until_the_borrower_writes_again() -> None:
    inbound = NOW - timedelta(hours=23)
    closed = WindowState(inbound, NOW, closed_by_provider_at=NOW - timedelta(minutes=5))
    assert not closed.is_open and closed.closed_by_provider
    assert closed.closes_at == NOW - timedelta(minutes=5)
    assert "error 131047" in closed.explain(PHONE)
    assert "reopens when the borrower writes again" in closed.explain(PHONE)
    # An inbound at or after the refusal (Meta's whole seconds) reopens it.
    for written in (NOW - timedelta(minutes=5), NOW - timedelta(minutes=1)):
        reopened = WindowState(written, NOW, closed_by_provider_at=NOW - timedelta(minutes=5))
        assert reopened.is_open and not reopened.closed_by_provider
        assert reopened.closes_at == written + timedelta(hours=24)
