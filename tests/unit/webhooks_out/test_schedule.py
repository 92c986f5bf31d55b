"""The retry schedule grows and spans about three days."""

from __future__ import annotations

from parley.webhooks_out import schedule


def test_delays_grow_and_never_shrink():
    delays = [schedule.delay_after(n) for n in range(1, schedule.MAX_ATTEMPTS)]
    assert all(d is not None for d in delays)
    assert delays[:5] == [5, 300, 1800, 7200, 18000]
    assert delays == sorted(delays)


def test_schedule_spans_about_three_days_then_gives_up():
    total = sum(schedule.DELAYS)
    assert 2.5 * 86400 <= total <= 3.5 * 86400
    assert schedule.delay_after(schedule.MAX_ATTEMPTS - 1) is not None
    assert schedule.delay_after(schedule.MAX_ATTEMPTS) is None
    assert schedule.delay_after(0) is None
