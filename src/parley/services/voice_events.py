"""A voice provider's callbacks about calls (Twilio's, or the sandbox network's, in
Twilio's vocabulary), applied forward-only, and inbound calls routed to agents.

Every callback is stored as a ``call_events`` row (the provider's timestamp, the raw
parameters) once -- a repeat (same idempotency token) is dropped -- under the call row's
lock, so one call's callbacks apply one at a time. A leg's status only moves forward
(invariant 4): ``ringing`` after ``completed`` is stored with ``applied = false`` and
changes nothing.

What a leg's progress does to its call:

- the agent answers (outbound): the borrower is dialed into the conference;
- the borrower's leg sets the call's status (initiated, ringing, in_progress) and, when
  it ends, its caps result (busy / failed: not connected; no-answer: counted; answered:
  a conversation, or voicemail per answering-machine detection) and ``awaiting_log``;
  agents still on the line are hung up;
- the last agent leaves: the borrower's leg is hung up (an agent who never answered an
  outbound call: nothing was dialed, the call is ``canceled``; an inbound caller goes
  to voicemail instead);
- an agent other than the call's own leaves (a transfer): they are free again.

Inbound calls (a borrower calls our number; the number's Voice URL is
``/webhooks/{provider}/{account}/voice/inbound``): the caller's number is matched to a
borrower of the organization and their most recent open case; the call rings the case's
assigned agent when available, else the available agent idle longest; with nobody
available the caller leaves a voicemail, which the case's agent then logs. Unknown
numbers hear a short message (no call is recorded).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import VoiceCallback
from parley.services import calls as calls_svc
from parley.services import presence
from parley.services.errors import NotFound
from parley.services.voice_calls import (
    ProviderFailed,
    call_agent,
    conference_twiml,
    emit,
    legs,
    live,
    provider_for,
    record_provider_error,
)
from parley.storage.db import raw_connection
from parley.storage.models import Call, CallEvent, CallLeg, Case, CaseBorrower, ContactPoint
from parley.voice import twiml
from parley.voice.lifecycle import (
    TERMINAL_PROVIDER,
    CallStatus,
    attempt_result,
    borrower_call_status,
    moves_forward,
)

if TYPE_CHECKING:
    from parley.bootstrap import Container
    from parley.dispatch.providers import AccountRow

log = logging.getLogger(__name__)

_CALL_RANK = {
    CallStatus.CONNECTING: 0,
    CallStatus.INITIATED: 1,
    CallStatus.RINGING: 2,
    CallStatus.IN_PROGRESS: 3,
    CallStatus.AWAITING_LOG: 4,
    CallStatus.COMPLETED: 5,
    CallStatus.CANCELED: 5,
    CallStatus.FAILED: 5,
}
_ANSWERED = ("in-progress", "answered")
VOICEMAIL_PROMPT = "Nobody can take your call right now. Please leave a message after the tone."
UNKNOWN_CALLER = "Thank you for calling. We could not find your account; please call again later."

Action = Callable[[], Awaitable[Any]]


# A verified callback: the provider's parameters, its dedupe key, its time.
Callback = VoiceCallback


def _rank(status: str) -> int:
    try:
        return _CALL_RANK[CallStatus(status)]
    except (ValueError, KeyError):
        return -1


async def _locked(session: AsyncSession, account: AccountRow, call_id: uuid.UUID) -> Call:
    call: Call | None = await session.scalar(
        select(Call)
        .where(
            Call.id == call_id,
            Call.organization_id == uuid.UUID(account.organization_id),
            Call.provider_account_id == uuid.UUID(account.id),
        )
        .with_for_update()
    )
    if call is None:
        raise NotFound(f"call {call_id} not found")
    return call


async def _seen(session: AsyncSession, call: Call, key: str) -> bool:
    found = await session.scalar(
        select(CallEvent.id).where(CallEvent.call_id == call.id, CallEvent.dedupe_key == key)
    )
    return found is not None


def _store(call: Call, kind: str, cb: Callback, status: str | None, applied: bool) -> CallEvent:
    return CallEvent(
        organization_id=call.organization_id,
        call_id=call.id,
        kind=kind,
        call_sid=cb.params.get("CallSid"),
        provider_status=status,
        occurred_at=cb.occurred_at,
        dedupe_key=cb.dedupe_key,
        applied=applied,
        raw=cb.params,
    )


async def _run(actions: list[Action]) -> None:
    for action in actions:
        try:
            await action()
        except Exception:  # the call's own callbacks will tell us how it ends
            log.exception("voice follow-up action failed")


# -- status callbacks ------------------------------------------------------------------


async def on_status(
    container: Container, account: AccountRow, call_id: uuid.UUID, cb: Callback
) -> bool:
    """Apply a call status callback; returns False for a duplicate."""
    actions: list[Action] = []
    async with container.db.session() as session:
        call = await _locked(session, account, call_id)
        if await _seen(session, call, cb.dedupe_key):
            return False
        status = cb.params.get("CallStatus", "").strip().lower()
        sid = cb.params.get("CallSid", "")
        all_legs = await legs(session, call)
        leg = next((x for x in all_legs if x.call_sid == sid), None)
        applied = leg is not None and moves_forward(leg.status, status)
        if leg is not None and applied:
            leg.status = status
            if status in _ANSWERED and leg.answered_at is None:
                leg.answered_at = cb.occurred_at
            if status in TERMINAL_PROVIDER:
                leg.ended_at = cb.occurred_at
            if leg.role == "customer":
                await _customer_progress(container, session, call, leg, all_legs, cb, actions)
            else:
                await _agent_progress(container, session, call, leg, all_legs, cb, actions)
        session.add(_store(call, "status", cb, status, applied))
        await session.commit()
    await _run(actions)
    return True


async def _answered_by(session: AsyncSession, call: Call, sid: str) -> str | None:
    value = await session.scalar(
        select(CallEvent.raw["AnsweredBy"].astext).where(
            CallEvent.call_id == call.id,
            CallEvent.call_sid == sid,
            CallEvent.raw.has_key("AnsweredBy"),
        )
    )
    return value if isinstance(value, str) else None


async def _customer_progress(
    container: Container,
    session: AsyncSession,
    call: Call,
    leg: CallLeg,
    all_legs: list[CallLeg],
    cb: Callback,
    actions: list[Action],
) -> None:
    status = leg.status
    new = borrower_call_status(status)
    # An ended call never moves again; a live one only forward.
    if new is None or call.status not in _LIVE_VALUES or _rank(new) <= _rank(call.status):
        return
    if new == CallStatus.IN_PROGRESS and call.direction == "inbound":
        return  # an inbound call is in progress once an agent answers
    call.provider_status = status
    if new == CallStatus.IN_PROGRESS:
        call.answered_at = cb.occurred_at
    if new == CallStatus.AWAITING_LOG:
        if call.direction == "outbound":
            answered_by = cb.params.get("AnsweredBy") or await _answered_by(
                session, call, leg.call_sid
            )
            call.result = attempt_result(
                status, answered=leg.answered_at is not None, answered_by=answered_by
            )
        call.ended_at = cb.occurred_at
        call.muted = False
        provider = await provider_for(container, _account_id(call))
        for other in all_legs:
            if other.role == "agent" and live(other):
                actions.append(_hang_up(provider, other.call_sid))
    call.status = new.value
    await session.flush()
    await emit(session, call, "call.status_changed")
    if new == CallStatus.AWAITING_LOG:
        await emit(session, call, "call.completed")


_LIVE_VALUES = frozenset(
    {CallStatus.CONNECTING, CallStatus.INITIATED, CallStatus.RINGING, CallStatus.IN_PROGRESS}
)


def _account_id(call: Call) -> uuid.UUID:
    assert call.provider_account_id is not None
    return call.provider_account_id


def _hang_up(provider: Any, sid: str) -> Action:
    async def action() -> None:
        await provider.update_call(sid, status="completed")

    return action


async def _agent_progress(
    container: Container,
    session: AsyncSession,
    call: Call,
    leg: CallLeg,
    all_legs: list[CallLeg],
    cb: Callback,
    actions: list[Action],
) -> None:
    provider = await provider_for(container, _account_id(call))
    customer = next((x for x in all_legs if x.role == "customer"), None)
    now = container.clock()
    if leg.status in _ANSWERED:
        if call.direction == "outbound" and customer is None:
            if call.status == CallStatus.CONNECTING:
                await _dial_borrower(container, session, call, provider, leg, actions)
        elif call.direction == "inbound" and call.status == CallStatus.RINGING:
            call.status = CallStatus.IN_PROGRESS.value
            call.answered_at = cb.occurred_at
            await session.flush()
            await emit(session, call, "call.status_changed")
        return
    if leg.status not in TERMINAL_PROVIDER:
        return
    others = [x for x in all_legs if x.role == "agent" and live(x) and x is not leg]
    if others:
        if leg.user_id == call.agent_user_id:
            # The call's agent left a call another agent is on: it is theirs now.
            answered = [x for x in others if x.answered_at is not None] or others
            call.agent_user_id = answered[0].user_id
            call.muted = False
            await session.flush()
            await emit(session, call, "call.status_changed")
    elif customer is None:
        if call.status == CallStatus.CONNECTING:
            # The agent never picked up: the borrower was never dialed.
            call.status = CallStatus.CANCELED.value
            call.result = "not_dialed"
            call.ended_at = cb.occurred_at
            await presence.release(session, call.organization_id, call.agent_user_id, call.id, now)
            await session.flush()
            await emit(session, call, "call.status_changed")
    elif live(customer):
        if call.direction == "inbound" and call.status == CallStatus.RINGING:
            voicemail = twiml.voicemail(
                VOICEMAIL_PROMPT, provider.callback_url(f"calls/{call.id}/recording")
            )
            sid = customer.call_sid

            async def to_voicemail() -> None:
                await provider.update_call(sid, twiml=voicemail)

            actions.append(to_voicemail)
        else:
            actions.append(_hang_up(provider, customer.call_sid))
    if leg.user_id != call.agent_user_id:
        await presence.release(session, call.organization_id, leg.user_id, call.id, now)


async def _dial_borrower(
    container: Container,
    session: AsyncSession,
    call: Call,
    provider: Any,
    agent_leg: CallLeg,
    actions: list[Action],
) -> None:
    """The agent answered: dial the borrower into the conference (under the call's lock,
    so a repeated `answered` callback cannot dial twice)."""
    response = await provider.create_call(
        to=call.to_address,
        twiml=conference_twiml(provider, call),
        status_callback=provider.callback_url(f"calls/{call.id}/status"),
    )
    if response.ok and response.sid:
        session.add(
            CallLeg(
                organization_id=call.organization_id,
                call_id=call.id,
                call_sid=response.sid,
                role="customer",
                user_id=None,
                status="queued",
            )
        )
        await session.flush()
        return
    await record_provider_error(session, call, "dial_borrower", response)
    now = container.clock()
    call.status = CallStatus.FAILED.value
    call.result = "not_dialed"
    call.ended_at = now
    await presence.release(session, call.organization_id, call.agent_user_id, call.id, now)
    await session.flush()
    await emit(session, call, "call.status_changed")
    actions.append(_hang_up(provider, agent_leg.call_sid))


# -- conference and recording callbacks ---------------------------------------------------


async def on_conference(
    container: Container, account: AccountRow, call_id: uuid.UUID, cb: Callback
) -> bool:
    async with container.db.session() as session:
        call = await _locked(session, account, call_id)
        if await _seen(session, call, cb.dedupe_key):
            return False
        conference_sid = cb.params.get("ConferenceSid")
        applied = bool(conference_sid) and call.conference_sid is None
        if applied:
            call.conference_sid = conference_sid
        event = cb.params.get("StatusCallbackEvent")
        session.add(_store(call, "conference", cb, event, applied))
        await session.commit()
    return True


async def on_recording(
    container: Container, account: AccountRow, call_id: uuid.UUID, cb: Callback
) -> bool:
    """Keep the call's recording: its sid, URL (on Twilio, fetched with the account's
    credentials; Parley does not copy the audio) and duration. The first completed
    recording is the call's; every recording callback stays in the events."""
    async with container.db.session() as session:
        call = await _locked(session, account, call_id)
        if await _seen(session, call, cb.dedupe_key):
            return False
        status = cb.params.get("RecordingStatus", "completed")
        applied = status == "completed" and call.recording_sid is None
        if applied:
            call.recording_sid = cb.params.get("RecordingSid")
            call.recording_url = cb.params.get("RecordingUrl")
            duration = cb.params.get("RecordingDuration", "")
            call.recording_duration = int(duration) if duration.isdigit() else None
        session.add(_store(call, "recording", cb, status, applied))
        await session.commit()
    return True


# -- inbound calls ---------------------------------------------------------------------


async def _borrower_case(
    session: AsyncSession, org_id: uuid.UUID, number: str
) -> tuple[ContactPoint, Case] | None:
    row = (
        await session.execute(
            select(ContactPoint, Case)
            .join(CaseBorrower, CaseBorrower.borrower_id == ContactPoint.borrower_id)
            .join(Case, Case.id == CaseBorrower.case_id)
            .where(
                ContactPoint.organization_id == org_id,
                ContactPoint.kind == "phone",
                ContactPoint.value == number,
                Case.organization_id == org_id,
                Case.status == "open",
            )
            .order_by(ContactPoint.is_primary.desc(), Case.created_at.desc())
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def on_inbound(container: Container, account: AccountRow, cb: Callback) -> str:
    """A borrower calls our number: record the call, ring an agent; the caller's TwiML."""
    org_id = uuid.UUID(account.organization_id)
    provider = await provider_for(container, uuid.UUID(account.id))
    sid = cb.params.get("CallSid", "")
    caller = cb.params.get("From", "")
    # The number the borrower dialed: ours (Twilio sends it as `To` and `Called`); the
    # account's own number if the webhook names none that fits.
    candidates = (cb.params.get("To"), cb.params.get("Called"), provider.caller_id)
    ours = next((n for n in candidates if n and len(n) <= 32), "")
    now = container.clock()
    async with container.db.session() as session:
        existing = await session.scalar(
            select(Call)
            .join(CallLeg, CallLeg.call_id == Call.id)
            .where(Call.organization_id == org_id, CallLeg.call_sid == sid)
        )
        if existing is not None:  # Twilio retried the webhook: same answer
            return conference_twiml(provider, existing)
        found = await _borrower_case(session, org_id, caller)
        if found is None:
            return twiml.say_and_hang_up(UNKNOWN_CALLER)
        contact, case = found
        agent = await presence.pick_available(session, org_id, case.assigned_agent_id)
        call = Call(
            id=uuid.uuid4(),
            organization_id=org_id,
            case_id=case.id,
            borrower_id=contact.borrower_id,
            contact_point_id=contact.id,
            to_address=ours,
            from_address=caller,
            direction="inbound",
            status=(CallStatus.RINGING if agent else CallStatus.IN_PROGRESS).value,
            prior_consent=False,
            purpose="collection",
            provider_account_id=uuid.UUID(account.id),
            agent_user_id=agent.user_id if agent else case.assigned_agent_id,
            created_at=now,
            answered_at=None if agent else now,
        )
        call.conference_name = f"parley-{call.id}"
        session.add(call)
        await session.flush()
        session.add(
            CallLeg(
                organization_id=org_id,
                call_id=call.id,
                call_sid=sid,
                role="customer",
                status="in-progress",
                answered_at=now,
            )
        )
        if agent is not None:
            presence.mark_busy(agent, call.id, now)
        await session.flush()
        # The borrower calling in is activity on their conversation (unread for the agent).
        await calls_svc.touch_conversation(
            await raw_connection(session), call, now, "Incoming call"
        )
        await emit(session, call, "call.status_changed")
        await session.commit()
        voicemail = twiml.voicemail(
            VOICEMAIL_PROMPT,
            provider.callback_url(f"calls/{call.id}/recording"),
        )
        if agent is None or agent.endpoint is None:
            return voicemail
        call = await _locked(session, account, call.id)
        try:
            await call_agent(container, session, call, agent.user_id, agent.endpoint, first=True)
        except ProviderFailed:
            call.status = CallStatus.IN_PROGRESS.value
            call.answered_at = now
            await presence.release(session, org_id, agent.user_id, call.id, now)
            await session.commit()
            return voicemail
        await session.commit()
        # The agent's leg records the conference: a caller who ends up in voicemail
        # leaves that recording, not one of the wait.
        return conference_twiml(provider, call)


async def call_of_leg(container: Container, account: AccountRow, sid: str) -> uuid.UUID:
    async with container.db.session() as session:
        call_id = await session.scalar(
            select(CallLeg.call_id)
            .join(Call, Call.id == CallLeg.call_id)
            .where(
                CallLeg.call_sid == sid,
                Call.organization_id == uuid.UUID(account.organization_id),
                Call.provider_account_id == uuid.UUID(account.id),
            )
        )
    if call_id is None:
        raise NotFound(f"no call has leg {sid}")
    return call_id
