"""The call lifecycle, pure: status mapping, forward-only ordering, what an ended call
counts for under the caps, and how a disposition refines it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.compliance.caps import UNCONNECTED_RESULTS, AttemptResult
from parley.voice.lifecycle import (
    TERMINAL_PROVIDER,
    CallStatus,
    Disposition,
    DispositionConflict,
    attempt_result,
    borrower_call_status,
    moves_forward,
    rank,
    result_for_disposition,
)

TWILIO = [
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
]


@pytest.mark.parametrize(
    ("provider", "ours"),
    [
        ("queued", CallStatus.INITIATED),
        ("initiated", CallStatus.INITIATED),
        ("ringing", CallStatus.RINGING),
        ("in-progress", CallStatus.IN_PROGRESS),
        ("completed", CallStatus.AWAITING_LOG),
        ("busy", CallStatus.AWAITING_LOG),
        ("no-answer", CallStatus.AWAITING_LOG),
        ("failed", CallStatus.AWAITING_LOG),
        ("canceled", CallStatus.AWAITING_LOG),
        ("teleported", None),
    ],
)
def test_borrower_leg_status_maps_to_the_call_status(provider: str, ours: CallStatus) -> None:
    assert borrower_call_status(provider) == ours


def _apply(sequence: list[str]) -> str | None:
    current: str | None = None
    for status in sequence:
        if moves_forward(current, status):
            current = status
    return current


@given(st.lists(st.sampled_from(TWILIO), max_size=12))
def test_a_leg_ends_at_its_furthest_status_whatever_the_order(sequence: list[str]) -> None:
    final = _apply(sequence)
    if not sequence:
        assert final is None
        return
    assert rank(final) == max(rank(s) for s in sequence)
    terminal = [s for s in sequence if s in TERMINAL_PROVIDER]
    if terminal:
        assert final == terminal[0], "the first terminal status wins; later ones are absorbed"
    # Duplicates change nothing.
    assert _apply(sequence + sequence) == final


def test_completed_before_ringing_is_absorbed() -> None:
    assert _apply(["initiated", "completed", "ringing", "in-progress"]) == "completed"
    assert not moves_forward("completed", "busy")
    assert not moves_forward("ringing", "ringing")
    assert moves_forward(None, "ringing")


@pytest.mark.parametrize(
    ("status", "answered", "answered_by", "result"),
    [
        ("busy", False, None, "busy"),
        ("failed", False, None, "network_failure"),
        ("no-answer", False, None, "no_answer"),
        ("canceled", False, None, "no_answer"),
        ("completed", True, None, "conversation"),
        ("completed", True, "human", "conversation"),
        ("completed", True, "machine_end_beep", "voicemail"),
        ("completed", True, "fax", "voicemail"),
    ],
)
def test_what_an_ended_call_counts_for(
    status: str, answered: bool, answered_by: str | None, result: str
) -> None:
    assert attempt_result(status, answered=answered, answered_by=answered_by) == result
    assert AttemptResult(result)  # always a result the caps understand


def test_busy_and_failed_calls_are_not_counted_by_reg_f() -> None:
    for status in ("busy", "failed"):
        result = attempt_result(status, answered=False, answered_by=None)
        assert AttemptResult(result) in UNCONNECTED_RESULTS
    for status in ("no-answer", "canceled"):
        result = attempt_result(status, answered=False, answered_by=None)
        assert AttemptResult(result) not in UNCONNECTED_RESULTS


@pytest.mark.parametrize("disposition", list(Disposition))
def test_every_disposition_yields_a_caps_result(disposition: Disposition) -> None:
    for provider in (None, "conversation", "voicemail", "no_answer"):
        assert AttemptResult(result_for_disposition(disposition, provider))


def test_dispositions_refine_the_result() -> None:
    assert result_for_disposition(Disposition.PROMISE_TO_PAY, "voicemail") == "conversation"
    assert result_for_disposition(Disposition.LEFT_MESSAGE, "conversation") == "left_message"
    assert result_for_disposition(Disposition.WRONG_NUMBER, "conversation") == "no_answer"
    assert result_for_disposition(Disposition.NO_ANSWER, "busy") == "busy"


@pytest.mark.parametrize("provider", ["busy", "network_failure", "not_dialed"])
def test_a_call_that_never_connected_cannot_be_logged_as_a_contact(provider: str) -> None:
    for disposition in Disposition:
        if disposition is Disposition.NO_ANSWER:
            continue
        with pytest.raises(DispositionConflict):
            result_for_disposition(disposition, provider)
