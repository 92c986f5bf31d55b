"""The mandatory interaction log of a call: disposition, notes, follow-up date, promise.

A call dialed through the voice provider ends ``awaiting_log``; only its log closes it
(``completed``) and frees its agent. The log is written once (a unique index: two
submissions at once cannot both win); a correction is a new log that supersedes the
previous one. The disposition sets the call's effective result for the frequency caps
(``parley.voice.lifecycle.result_for_disposition``); the provider's own result stays on
the call (written once, a database guard) and the caps read the latest log's first.
A call recorded by hand (no voice account, ``placed``) can be closed by a log too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services import presence
from parley.services.auth import Principal, Role
from parley.services.errors import Conflict, Forbidden, Invalid
from parley.services.voice_calls import emit, locked_call
from parley.storage.models import Call, CallLog, Case
from parley.voice.lifecycle import (
    LIVE,
    CallStatus,
    Disposition,
    DispositionConflict,
    result_for_disposition,
)

if TYPE_CHECKING:
    from parley.bootstrap import Container


@dataclass(frozen=True, slots=True)
class LogInput:
    disposition: str
    notes: str | None
    follow_up_date: date | None
    promise_amount: str | None
    promise_date: date | None
    correction: bool


async def latest_logs(session: AsyncSession, call_ids: list[uuid.UUID]) -> dict[uuid.UUID, CallLog]:
    if not call_ids:
        return {}
    rows = await session.scalars(
        select(CallLog).where(CallLog.call_id.in_(call_ids)).order_by(CallLog.call_id, CallLog.id)
    )
    latest: dict[uuid.UUID, CallLog] = {}
    for row in rows:
        latest[row.call_id] = row  # ordered by id: the last one supersedes the others
    return latest


def _promise(body: LogInput, today: date) -> tuple[Decimal | None, date | None]:
    if body.disposition != Disposition.PROMISE_TO_PAY:
        if body.promise_amount is not None or body.promise_date is not None:
            raise Invalid.field("promiseAmount", "only a promise_to_pay carries a promise")
        return None, None
    if body.promise_amount is None:
        raise Invalid.field("promiseAmount", "is required for promise_to_pay", "required")
    if body.promise_date is None:
        raise Invalid.field("promiseDate", "is required for promise_to_pay", "required")
    try:
        amount = Decimal(body.promise_amount)
    except InvalidOperation:
        raise Invalid.field("promiseAmount", 'must be a decimal string, e.g. "120.00"') from None
    if not amount.is_finite() or amount <= 0 or amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise Invalid.field("promiseAmount", "must be positive with at most 2 decimals")
    if amount >= Decimal("1e12"):
        raise Invalid.field("promiseAmount", "is too large")
    if body.promise_date < today:
        raise Invalid.field("promiseDate", "is in the past")
    return amount, body.promise_date


async def submit_log(
    container: Container,
    session: AsyncSession,
    principal: Principal,
    call_id: uuid.UUID,
    body: LogInput,
) -> tuple[Call, CallLog]:
    org_id = principal.organization_id
    try:
        disposition = Disposition(body.disposition)
    except ValueError:
        raise Invalid.field(
            "disposition", "must be one of " + ", ".join(d.value for d in Disposition)
        ) from None
    call = await locked_call(session, org_id, call_id)
    if call.agent_user_id not in (None, principal.user_id) and not principal.at_least(
        Role.SUPERVISOR
    ):
        raise Forbidden("only the call's agent or a supervisor can log this call")
    previous = (await latest_logs(session, [call.id])).get(call.id)
    if call.status in {s.value for s in LIVE}:
        raise Conflict(f"call {call.id} is still in progress: log it when it has ended")
    if call.status == CallStatus.BLOCKED or call.status in (
        CallStatus.CANCELED,
        CallStatus.FAILED,
    ):
        raise Conflict(f"call {call.id} never reached the borrower (status {call.status})")
    if previous is not None and not body.correction:
        raise Conflict(
            f"call {call.id} is already logged (log {previous.id}); send a correction "
            '("correction": true) to supersede it'
        )
    if previous is None and body.correction:
        raise Invalid.field("correction", "the call has no log to correct yet")
    if call.status == CallStatus.COMPLETED and previous is None:
        raise Conflict(f"call {call.id} was closed with a recorded result; it takes no log")
    now = container.clock()
    case = await session.get(Case, call.case_id)
    assert case is not None
    amount, promise_date = _promise(body, now.date())
    try:
        # A call that never connected keeps the provider's result through every log.
        result = result_for_disposition(disposition, call.result)
    except DispositionConflict as exc:
        raise Invalid.field("disposition", str(exc)) from None
    log = CallLog(
        organization_id=org_id,
        call_id=call.id,
        supersedes_id=previous.id if previous else None,
        disposition=disposition.value,
        result=result,
        notes=body.notes,
        follow_up_on=body.follow_up_date,
        promise_amount=amount,
        promise_currency=case.currency if amount is not None else None,
        promise_date=promise_date,
        logged_by_user_id=principal.user_id,
        logged_by_name=principal.name,
    )
    session.add(log)
    # calls.result is written once (a database guard): the provider's word for a dialed
    # call, kept as it was; the log's result is the call's effective result (the caps
    # read the latest log's first, services/contactability.py). A call no provider
    # reported on takes the first log's result.
    if call.result is None:
        call.result = result
        call.notes = body.notes
        if call.ended_at is None:
            call.ended_at = now
    call.result_recorded_at = now
    call.status = CallStatus.COMPLETED.value
    await session.flush()
    await presence.release(session, org_id, call.agent_user_id, call.id, now)
    await emit(session, call, "call.status_changed", disposition=disposition.value)
    await session.commit()
    return call, log
