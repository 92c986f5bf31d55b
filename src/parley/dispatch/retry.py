"""Retry policy for transient provider errors: exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_seconds: float = 2.0
    max_seconds: float = 3600.0

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Delay before attempt number `attempt + 1` (attempt counts sends made so far).

        Full jitter (a uniform draw up to the exponential ceiling) spreads retries of a
        batch that failed together; a provider's Retry-After is a floor, never shortened.
        """
        ceiling = min(self.max_seconds, self.base_seconds * (2 ** max(0, attempt - 1)))
        draw = (rng or random).uniform(ceiling / 2, ceiling)
        return max(draw, retry_after or 0.0)

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
