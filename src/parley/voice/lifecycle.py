"""A call's lifecycle, pure: provider call statuses, forward-only ordering, what a call
"counts for" under the frequency caps, and dispositions.

A click-to-call call moves ``connecting`` (the agent's phone rings) -> ``initiated`` ->
``ringing`` -> ``in_progress`` (the borrower's leg follows Twilio's CallStatus) and ends
``awaiting_log`` (the mandatory interaction log is missing) -> ``completed`` (logged). A
call the agent never picked up ends ``canceled`` (nothing was dialed); a call the
provider refused ends ``failed``. Statuses only move forward (invariant 4): a duplicate or
late callback (``ringing`` after ``completed``) is stored but changes nothing.
"""

from __future__ import annotations

from enum import StrEnum

from parley.compliance.caps import AttemptResult


class CallStatus(StrEnum):
    BLOCKED = "blocked"  # refused by the compliance gate
    PLACED = "placed"  # allowed, dialed by hand (no voice provider): result recorded later
    CONNECTING = "connecting"  # the agent's leg is being called
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    AWAITING_LOG = "awaiting_log"
    COMPLETED = "completed"
    CANCELED = "canceled"
    FAILED = "failed"


LIVE: frozenset[CallStatus] = frozenset(
    {CallStatus.CONNECTING, CallStatus.INITIATED, CallStatus.RINGING, CallStatus.IN_PROGRESS}
)
ENDED: frozenset[CallStatus] = frozenset(
    {CallStatus.AWAITING_LOG, CallStatus.COMPLETED, CallStatus.CANCELED, CallStatus.FAILED}
)

# Twilio CallStatus values, ranked: a status is applied only when it outranks the leg's.
# The terminal ones share the top rank: the first terminal status of a leg wins.
_RANK = {
    "queued": 1,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "answered": 3,
    "completed": 4,
    "busy": 4,
    "no-answer": 4,
    "failed": 4,
    "canceled": 4,
}
TERMINAL_PROVIDER = frozenset(k for k, v in _RANK.items() if v == 4)


def rank(provider_status: str | None) -> int:
    return _RANK.get(provider_status or "", 0)


def moves_forward(current: str | None, incoming: str) -> bool:
    """Whether `incoming` (a Twilio CallStatus) advances a leg now at `current`."""
    return rank(incoming) > rank(current)


def borrower_call_status(provider_status: str) -> CallStatus | None:
    """The call's status while its borrower leg is at `provider_status` (None: unknown)."""
    if provider_status in ("queued", "initiated"):
        return CallStatus.INITIATED
    if provider_status == "ringing":
        return CallStatus.RINGING
    if provider_status in ("in-progress", "answered"):
        return CallStatus.IN_PROGRESS
    if provider_status in TERMINAL_PROVIDER:
        return CallStatus.AWAITING_LOG
    return None


# Twilio's AnsweredBy (answering machine detection) values that are not a person.
_MACHINE = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)


def attempt_result(provider_status: str, *, answered: bool, answered_by: str | None) -> str:
    """What an ended borrower leg counts for under the caps (compliance.caps.AttemptResult).

    busy / failed -> not connected (not counted by Reg F); no-answer and canceled (we hung
    up while it rang) -> rang unanswered (counted); completed after being answered -> a
    conversation, or voicemail when answering machine detection says a machine answered.
    """
    if provider_status == "busy":
        return AttemptResult.BUSY.value
    if provider_status == "failed":
        return AttemptResult.NETWORK_FAILURE.value
    if provider_status == "completed" and answered:
        if answered_by in _MACHINE:
            return AttemptResult.VOICEMAIL.value
        return AttemptResult.CONVERSATION.value
    return AttemptResult.NO_ANSWER.value


class Disposition(StrEnum):
    """The outcome an agent logs for a call."""

    NO_ANSWER = "no_answer"
    LEFT_MESSAGE = "left_message"
    SPOKE_TO_CUSTOMER = "spoke_to_customer"
    PROMISE_TO_PAY = "promise_to_pay"
    REFUSED_TO_PAY = "refused_to_pay"
    DISPUTE = "dispute"
    CALLBACK_REQUESTED = "callback_requested"
    WRONG_NUMBER = "wrong_number"


_CONVERSATION = frozenset(
    {
        Disposition.SPOKE_TO_CUSTOMER,
        Disposition.PROMISE_TO_PAY,
        Disposition.REFUSED_TO_PAY,
        Disposition.DISPUTE,
        Disposition.CALLBACK_REQUESTED,
    }
)
_NOT_CONNECTED = frozenset(
    {
        AttemptResult.BUSY.value,
        AttemptResult.NETWORK_FAILURE.value,
        AttemptResult.NOT_IN_SERVICE.value,
        AttemptResult.NOT_DIALED.value,
    }
)


class DispositionConflict(ValueError):
    """The disposition claims a contact the provider says never happened."""


def result_for_disposition(disposition: Disposition, provider_result: str | None) -> str:
    """The call's caps result once the agent has logged `disposition`.

    The provider's word stands when the call never connected (busy, failed): only
    ``no_answer`` may be logged then. Otherwise the agent's disposition refines it: a
    conversation with the borrower starts Reg F's 7-day period; a wrong number reached a
    person but not the borrower (counted, no conversation with the consumer).
    """
    if provider_result in _NOT_CONNECTED:
        if disposition is not Disposition.NO_ANSWER:
            raise DispositionConflict(
                f"the call never connected ({provider_result}): only no_answer can be logged"
            )
        return provider_result
    if disposition in _CONVERSATION:
        return AttemptResult.CONVERSATION.value
    if disposition is Disposition.LEFT_MESSAGE:
        return AttemptResult.LEFT_MESSAGE.value
    return AttemptResult.NO_ANSWER.value  # no_answer, wrong_number
