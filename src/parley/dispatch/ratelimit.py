"""A token bucket per provider account, kept in PostgreSQL and shared by every worker.

`reserve(n)` atomically refills the bucket for the time elapsed and takes n tokens,
letting the balance go negative. The balance before the reservation tells each of the n
sends when its slot comes: send i may start after (i + 1 - balance) / rate seconds. So
concurrent workers interleave their reservations under the row lock and the long-run
rate never exceeds the configured one.

Tokens are taken at send time, a few at a time (:class:`Pacer`), not for a whole batch
before it is claimed: a worker that stalls (a busy machine, a slow claim, a collection)
holds at most those few slots, and a slot found late is given up rather than fired
late. Reserving a batch's slots up front meant every slot a stall spanned came due at
once, and the provider saw them as one burst (its own rate limit answered 429).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import psycopg

log = logging.getLogger(__name__)

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

# A slot whose time passed longer ago than this is given up (its token is lost) and the
# send takes the next one: the wait overran it (a stall), and sending now would bunch it
# with the slots after it.
LATE_SECONDS = 0.05
# Slots are reserved this far ahead of the sends that wait for them (in one round trip,
# at least one slot, at most MAX_LOOKAHEAD; never more than there are sends waiting),
# and reserved again before they run out: a bucket left unreserved for longer than one
# slot (burst 1) loses its refill, and a round trip takes a few milliseconds on a busy
# machine.
LOOKAHEAD_SECONDS = 0.05
MAX_LOOKAHEAD = 50
# Batches of one account a worker process may have claimed and not finished sending:
# the next batch is claimed while one sends (no gap in the account's sending), and no
# more, so claimed messages wait for their turn about as long as two batches take.
CLAIMED_BATCHES = 2


class PacingUnavailable(Exception):
    """No slot could be reserved (the database is unreachable): nothing was sent."""


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


class Pacer:
    """One rate-limited account's sends in this process, one after another, each at a
    slot taken from the shared bucket shortly before it (reserved a little ahead)."""

    def __init__(self, pool: Any, account_id: str, rate: float, burst: float) -> None:
        self.pool = pool
        self.account_id = account_id
        self.rate = rate
        self.burst = burst
        self.loop = asyncio.get_running_loop()  # its locks belong to this loop
        self.lookahead = max(1, min(MAX_LOOKAHEAD, math.floor(rate * LOOKAHEAD_SECONDS)))
        # Held by a job from before it claims a batch until the batch is sent.
        self.batches = asyncio.Semaphore(CLAIMED_BATCHES)
        self._turn = asyncio.Lock()
        self._slots: deque[float] = deque()  # loop times of reserved, unused slots
        self._refill: asyncio.Task[None] | None = None
        self._waiting = 0  # sends in wait_turn (holding or queued for the turn)
        self.given_up = 0  # slots given up late (for tests and diagnostics)

    @property
    def held(self) -> int:
        """Slots reserved and not used yet."""
        return len(self._slots)

    async def wait_turn(self) -> None:
        """Return when one send may start (its token taken, its slot come). Callers
        queue in order; the send should follow at once."""
        self._waiting += 1
        try:
            async with self._turn:
                await self._take_turn()
        finally:
            self._waiting -= 1

    async def _take_turn(self) -> None:
        loop = self.loop
        while True:
            if not self._slots:
                await self._refilled()
            due = self._slots.popleft()
            if loop.time() - due <= LATE_SECONDS:
                break
            self.given_up += 1
        # Reserve ahead for the sends queued behind this one (never for sends that may
        # not come: a slot reserved and not used is a token lost).
        behind = self._waiting - 1
        if len(self._slots) < min(self.lookahead, behind) and self._refill is None:
            self._refill = loop.create_task(self._reserve())
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _refilled(self) -> None:
        if self._refill is None:
            self._refill = self.loop.create_task(self._reserve())
        # Shielded: other sends wait for the same trip; one of them being cancelled
        # must not cancel it.
        await asyncio.shield(self._refill)
        if not self._slots:
            raise PacingUnavailable(f"no rate-limit slots for account {self.account_id}")

    async def _reserve(self) -> None:
        try:
            # The sends waiting now, at least one, at most the lookahead.
            count = max(1, min(self.lookahead, self._waiting - len(self._slots)))
            try:
                async with self.pool.connection() as conn:
                    r = await reserve(conn, self.account_id, count, self.rate, self.burst)
            except Exception:  # the waiting send learns it from _refilled
                log.warning(
                    "rate limit of account %s: reserving slots failed",
                    self.account_id,
                    exc_info=True,
                )
                return
            start = self.loop.time()
            last = self._slots[-1] if self._slots else start
            for i in range(r.count):
                # Never before a slot already held: reservations answered with different
                # delays must not reorder (and bunch) the sends.
                last = max(last, start + r.delay_for(i))
                self._slots.append(last)
        finally:
            self._refill = None


class Pacers:
    """The process's pacers, one per rate-limited account (rebuilt if its rate or burst
    changed)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._pacers: dict[str, Pacer] = {}

    def get(self, account_id: str, rate: float, burst: float) -> Pacer:
        loop = asyncio.get_running_loop()
        pacer = self._pacers.get(account_id)
        if pacer is None or (pacer.rate, pacer.burst, pacer.loop) != (rate, burst, loop):
            pacer = self._pacers[account_id] = Pacer(self.pool, account_id, rate, burst)
        return pacer
