"""A token bucket per provider account, kept in PostgreSQL and shared by every worker.

`reserve(n)` atomically refills the bucket for the time elapsed and takes n tokens,
letting the balance go negative. The balance before the reservation tells each of the n
sends when its slot comes: send i may start after (i + 1 - balance) / rate seconds. So
concurrent workers interleave their reservations under the row lock and the long-run
rate never exceeds the configured one, while sends within a reservation are paced
evenly instead of bursting.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import psycopg

RESERVE_SQL = """
INSERT INTO rate_buckets AS b (provider_account_id, tokens, updated_at)
VALUES (%(id)s, %(burst)s - %(n)s, clock_timestamp())
ON CONFLICT (provider_account_id) DO UPDATE
SET tokens = LEAST(
        %(burst)s::float8,
        b.tokens + %(rate)s * EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at)
    ) - %(n)s,
    updated_at = clock_timestamp()
RETURNING tokens + %(n)s
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    rate: float
    balance_before: float  # tokens available when reserving (may be negative)
    count: int

    def delay_for(self, index: int) -> float:
        """Seconds send number `index` (0-based) of this reservation must wait."""
        return max(0.0, (index + 1 - self.balance_before) / self.rate)


async def reserve(
    conn: psycopg.AsyncConnection, account_id: str, n: int, rate: float, burst: float
) -> Reservation:
    cur = await conn.execute(
        RESERVE_SQL, {"id": account_id, "n": n, "rate": rate, "burst": float(burst)}
    )
    row = await cur.fetchone()
    assert row is not None
    return Reservation(rate=rate, balance_before=float(row[0]), count=n)


async def wait_for_slot(reservation: Reservation, index: int, start: float) -> None:
    """Sleep until send number `index` of the reservation may start (slots are measured
    from `start`, the event loop time taken when the reservation was made)."""
    wait = start + reservation.delay_for(index) - asyncio.get_running_loop().time()
    if wait > 0:
        await asyncio.sleep(wait)
