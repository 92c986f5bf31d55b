"""The maintenance tasks run as often as their docstrings promise, at any time of day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from parley.dispatch.jobs import make_blueprint


def _next_gaps(cron_task: str) -> list[float]:
    registry = make_blueprint().periodic_registry.periodic_tasks
    (task,) = [t for (name, _), t in registry.items() if name == cron_task]
    gaps = []
    base = datetime(2026, 11, 22, 18, 46, 3, tzinfo=UTC)
    for minutes in range(0, 24 * 60, 7):  # starting points all over the day
        start = (base + timedelta(minutes=minutes)).timestamp()
        nxt = task.croniter.get_next(ret_type=float, start_time=start)
        gaps.append(nxt - start)
    return gaps


def test_stalled_jobs_are_requeued_every_five_seconds_all_day():
    # A worker killed at any minute must have its jobs re-queued within seconds (this
    # once read "*/5 * * * * *": every second of every fifth minute only).
    assert max(_next_gaps("requeue_stalled_jobs")) <= 5


def test_reconciliation_runs_every_minute():
    assert max(_next_gaps("reconcile_messages")) <= 60
