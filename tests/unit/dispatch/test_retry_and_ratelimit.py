"""Retry backoff and token-bucket pacing (pure parts)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from parley.dispatch.ratelimit import Reservation
from parley.dispatch.retry import RetryPolicy


@given(st.integers(min_value=1, max_value=30), st.integers(min_value=0, max_value=2**32))
def test_backoff_grows_exponentially_with_jitter_and_a_cap(attempt, seed):
    policy = RetryPolicy(max_attempts=6, base_seconds=2.0, max_seconds=600.0)
    ceiling = min(600.0, 2.0 * 2 ** (attempt - 1))
    delay = policy.delay(attempt, rng=random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling


def test_jitter_spreads_a_batch_that_failed_together():
    policy = RetryPolicy(base_seconds=2.0)
    rng = random.Random(1)
    delays = {round(policy.delay(3, rng=rng), 3) for _ in range(50)}
    assert len(delays) > 40


def test_retry_after_is_a_floor():
    policy = RetryPolicy(base_seconds=0.1, max_seconds=1.0)
    assert policy.delay(1, retry_after=30.0) == 30.0


def test_attempts_are_limited():
    policy = RetryPolicy(max_attempts=3)
    assert not policy.exhausted(2)
    assert policy.exhausted(3)


@given(
    st.floats(min_value=0.5, max_value=500),
    st.floats(min_value=-200, max_value=50),
    st.integers(min_value=1, max_value=200),
)
def test_reservation_slots_never_exceed_the_rate(rate, balance, count):
    r = Reservation(rate=rate, balance_before=balance, count=count)
    delays = [r.delay_for(i) for i in range(count)]
    assert delays == sorted(delays)
    assert all(d >= 0 for d in delays)
    # By the time send i starts, the bucket has accrued enough tokens for i + 1 sends.
    for i in range(count):
        assert i + 1 <= balance + delays[i] * rate + 1e-6
