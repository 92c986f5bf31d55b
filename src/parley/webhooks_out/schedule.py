"""When a failed delivery is tried again: growing delays over about three days.

Standard Webhooks' suggested schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
10 h) spans about 28 hours; four more 10-hour waits stretch it to about 2.8 days, so a
receiver that is down over a weekend day still gets its events. 12 attempts in all.
No jitter: each delivery's clock starts at its own event, which already spreads them.
"""

from __future__ import annotations

# Seconds to wait after failed attempt n (index n - 1) before attempt n + 1.
DELAYS: tuple[int, ...] = (
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    *(10 * 3600,) * 6,
)
MAX_ATTEMPTS = len(DELAYS) + 1


def delay_after(attempts: int) -> int | None:
    """Seconds until the next attempt after `attempts` failed ones; None: give up."""
    if attempts < 1 or attempts > len(DELAYS):
        return None
    return DELAYS[attempts - 1]
