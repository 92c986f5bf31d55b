"""Click-to-call: place a call through the organization's voice account and control it
live (its callbacks: ``services.voice_events``; its log: ``services.call_logs``).

Placing a call (``POST /api/cases/{caseId}/calls`` when the organization has a voice
account that places calls: Twilio, or the sandbox's simulated network):

1. the agent must be ``available`` with a voice endpoint and have no other call open (live,
   or ended and still awaiting its log): 409 naming the open call otherwise;
2. the compliance gate decides under the per-(borrower, case) lock (``services.calls``);
   an allowed call is recorded ``connecting`` and the agent made ``busy`` in that same
   transaction, so the Reg F caps stay race-free and count the attempt from this moment;
3. the agent's leg is created (Calls API, To = the agent's endpoint) with TwiML that puts
   them in the call's conference (recorded); when they answer, the borrower is dialed
   into the same conference (``services.voice_events``).

Every leg is placed from the account's caller id (``VoiceProvider.caller_id``, Twilio's
``From``): it is recorded as the call's ``from_address`` when the call is, the borrower's
number being its ``to_address``.

Every party meets in a conference, so the controls are plain Voice API operations
(Twilio's, which the sandbox's network honours the same way): hang-up
is ``Status=completed`` on the legs, mute is the Participants API on the agent's leg,
DTMF is ``<Play digits>`` on the borrower's leg (which then rejoins the conference), a
transfer calls another agent into the conference (blind: the first agent's leg is hung
up at once; warm: the first agent stays until they leave).

When the borrower's leg ends the call is ``awaiting_log`` until its log closes it.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels import registry
from parley.channels.base import ProviderConfigError, VoiceProvider, VoiceResponse
from parley.compliance import gate
from parley.domain.channels import Channel
from parley.services import activity, calls, presence
from parley.services.auth import Principal
from parley.services.errors import Conflict, Invalid, NotFound, ServiceError
from parley.storage.db import raw_connection
from parley.storage.models import Call, CallEvent, CallLeg, ProviderAccount
from parley.voice import twiml
from parley.voice.lifecycle import (
    LIVE,
    CallStatus,
)

if TYPE_CHECKING:
    from parley.bootstrap import Container

_DIGITS = re.compile(r"[0-9*#wW]{1,32}\Z")
OPEN = frozenset({*LIVE, CallStatus.AWAITING_LOG})


class ProviderFailed(ServiceError):
    status = 502
    title = "Bad gateway"


# -- helpers shared with voice_events ----------------------------------------------------


async def voice_account(session: AsyncSession, org_id: uuid.UUID) -> ProviderAccount | None:
    """The organization's voice account: its default enabled voice account of a provider
    that places live calls (Twilio, or the sandbox's simulated network)."""
    account: ProviderAccount | None = await session.scalar(
        select(ProviderAccount)
        .where(
            ProviderAccount.organization_id == org_id,
            ProviderAccount.channel == Channel.VOICE.value,
            ProviderAccount.provider.in_(registry.call_providers()),
            ProviderAccount.enabled.is_(True),
        )
        .order_by(ProviderAccount.is_default.desc(), ProviderAccount.created_at)
        .limit(1)
    )
    return account


async def provider_for(container: Container, account_id: uuid.UUID) -> VoiceProvider:
    row = await container.providers.account(str(account_id))
    if row is None:
        raise Conflict("the call's voice account no longer exists")
    try:
        provider = await container.providers.get(row)
    except ProviderConfigError as exc:  # settings written past the API's validation
        raise Conflict(f"the voice account's settings are unusable: {exc}") from exc
    if not isinstance(provider, VoiceProvider):
        raise Conflict("the call's voice account no longer places calls")
    return provider


def conference_twiml(provider: VoiceProvider, call: Call, *, first: bool = False) -> str:
    """The TwiML that puts a leg in the call's conference (the first leg records it)."""
    assert call.conference_name is not None
    base = f"calls/{call.id}"
    return twiml.conference(
        call.conference_name,
        status_callback=provider.callback_url(f"{base}/conference"),
        record_callback=provider.callback_url(f"{base}/recording") if first else None,
    )


async def call_agent(
    container: Container,
    session: AsyncSession,
    call: Call,
    user_id: uuid.UUID,
    endpoint: str,
    *,
    first: bool,
) -> CallLeg:
    """Ring an agent into the call's conference (caller holds the call row's lock)."""
    assert call.provider_account_id is not None
    provider = await provider_for(container, call.provider_account_id)
    response = await provider.create_call(
        to=endpoint,
        twiml=conference_twiml(provider, call, first=first),
        status_callback=provider.callback_url(f"calls/{call.id}/status"),
    )
    if not response.ok or response.sid is None:
        await record_provider_error(session, call, "create_agent_leg", response)
        raise ProviderFailed(
            f"the voice provider refused the agent's leg: {response.error_code} {response.detail}"
        )
    leg = CallLeg(
        organization_id=call.organization_id,
        call_id=call.id,
        call_sid=response.sid,
        role="agent",
        user_id=user_id,
        status="queued",
    )
    session.add(leg)
    await session.flush()
    return leg


async def record_provider_error(
    session: AsyncSession, call: Call, operation: str, response: VoiceResponse
) -> None:
    """A refused provider request, kept with the call's events (not a callback)."""
    session.add(
        CallEvent(
            organization_id=call.organization_id,
            call_id=call.id,
            kind="error",
            call_sid=None,
            provider_status=response.error_code,
            occurred_at=datetime.now(UTC),
            dedupe_key=f"error:{uuid.uuid4().hex}",
            applied=False,
            raw={
                "operation": operation,
                "httpStatus": response.status,
                "code": response.error_code,
                "message": response.detail,
            },
        )
    )
    await session.flush()


def event_payload(call: Call, disposition: str | None = None) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "callId": str(call.id),
        "caseId": str(call.case_id),
        "borrowerId": str(call.borrower_id),
        "status": call.status,
        "direction": call.direction,
        "from": call.from_address,
        "to": call.to_address,
        "agentId": str(call.agent_user_id) if call.agent_user_id else None,
        "result": call.result,
        "disposition": disposition,
        "placedAt": iso(call.placed_at),
        "answeredAt": iso(call.answered_at),
        "endedAt": iso(call.ended_at),
    }


async def emit(session: AsyncSession, call: Call, event_type: str, **extra: Any) -> None:
    conn = await raw_connection(session)
    await activity.emit(conn, str(call.organization_id), event_type, event_payload(call, **extra))


async def legs(session: AsyncSession, call: Call) -> list[CallLeg]:
    rows = await session.scalars(
        select(CallLeg).where(CallLeg.call_id == call.id).order_by(CallLeg.id)
    )
    return list(rows)


def live(leg: CallLeg) -> bool:
    return leg.ended_at is None


async def locked_call(session: AsyncSession, org_id: uuid.UUID, call_id: uuid.UUID) -> Call:
    call: Call | None = await session.scalar(
        select(Call).where(Call.id == call_id, Call.organization_id == org_id).with_for_update()
    )
    if call is None:
        raise NotFound(f"call {call_id} not found")
    return call


# -- placing a call ----------------------------------------------------------------------


async def open_call_of(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> Call | None:
    call: Call | None = await session.scalar(
        select(Call)
        .where(
            Call.organization_id == org_id,
            Call.agent_user_id == user_id,
            Call.status.in_([s.value for s in OPEN]),
        )
        .order_by(Call.created_at)
        .limit(1)
    )
    return call


async def place(
    container: Container,
    session: AsyncSession,
    principal: Principal,
    account: ProviderAccount,
    case_id: uuid.UUID,
    *,
    to: str | None,
    borrower_id: uuid.UUID | None,
    purpose: str,
) -> tuple[Call, gate.Decision]:
    org_id = principal.organization_id
    if principal.user_id is None:
        raise Conflict("click-to-call needs an agent: this API token belongs to no user")
    user_id = principal.user_id
    # The open call first: it is why a busy agent cannot call, and names what to do.
    open_call = await open_call_of(session, org_id, user_id)
    if open_call is not None:
        what = "awaits its log" if open_call.status == CallStatus.AWAITING_LOG else "is live"
        raise Conflict(f"call {open_call.id} {what}: finish it before placing another call")
    agent = await presence.require_available(session, org_id, user_id)
    endpoint = agent.endpoint
    assert endpoint is not None
    # The number the provider places every leg from (the borrower sees it): the call's
    # `from`, written with its record (which is append-only).
    caller_id = (await provider_for(container, account.id)).caller_id

    async def connect(session: AsyncSession, call: Call) -> None:
        call.status = CallStatus.CONNECTING.value
        call.provider_account_id = account.id
        call.agent_user_id = user_id
        call.conference_name = f"parley-{call.id}"
        presence.mark_busy(agent, call.id, container.clock())
        await session.flush()
        await emit(session, call, "call.status_changed")

    call, decision = await calls.place(
        container,
        session,
        principal,
        case_id,
        to=to,
        borrower_id=borrower_id,
        purpose=purpose,
        from_address=caller_id,
        on_allowed=connect,
    )
    if not decision.allowed:
        return call, decision
    # Committed: the attempt counts from now. Ring the agent, holding the call's row so
    # its callbacks (which lock it too) wait until the leg is on record.
    call = await locked_call(session, org_id, call.id)
    try:
        await call_agent(container, session, call, user_id, endpoint, first=True)
    except ProviderFailed:
        now = container.clock()
        call.status = CallStatus.FAILED.value
        call.result = "not_dialed"
        call.ended_at = now
        await presence.release(session, org_id, user_id, call.id, now)
        await emit(session, call, "call.status_changed")
        await session.commit()
        raise
    await session.commit()
    return call, decision


# -- live controls -----------------------------------------------------------------------


async def _live_call(
    container: Container, session: AsyncSession, principal: Principal, call_id: uuid.UUID
) -> tuple[Call, list[CallLeg], VoiceProvider]:
    call = await locked_call(session, principal.organization_id, call_id)
    if call.provider_account_id is None:
        raise Conflict(f"call {call.id} was not placed through the voice provider")
    if call.status not in {s.value for s in LIVE}:
        raise Conflict(f"call {call.id} is not live (status {call.status})")
    return call, await legs(session, call), await provider_for(container, call.provider_account_id)


def _customer(all_legs: list[CallLeg]) -> CallLeg | None:
    return next((leg for leg in all_legs if leg.role == "customer"), None)


def _agent_leg(all_legs: list[CallLeg], user_id: uuid.UUID | None) -> CallLeg | None:
    return next(
        (leg for leg in all_legs if leg.role == "agent" and leg.user_id == user_id and live(leg)),
        None,
    )


async def _checked(
    session: AsyncSession,
    call: Call,
    operation: str,
    response: VoiceResponse,
) -> None:
    if not response.ok:
        await record_provider_error(session, call, operation, response)
        await session.commit()
        raise ProviderFailed(
            f"the voice provider refused to {operation}: {response.error_code} {response.detail}"
        )


async def hang_up(
    container: Container, session: AsyncSession, principal: Principal, call_id: uuid.UUID
) -> Call:
    """End the whole call: every live leg is completed (the callbacks then end the call)."""
    call, all_legs, provider = await _live_call(container, session, principal, call_id)
    for leg in all_legs:
        if live(leg):
            response = await provider.update_call(leg.call_sid, status="completed")
            # 21220: the leg ended meanwhile -- its callback is on its way.
            if response.error_code != "21220":
                await _checked(session, call, "hang up", response)
    await session.commit()
    return call


async def mute(
    container: Container,
    session: AsyncSession,
    principal: Principal,
    call_id: uuid.UUID,
    muted: bool,
) -> Call:
    """Mute or unmute the agent's own leg in the conference (Participants API)."""
    call, all_legs, provider = await _live_call(container, session, principal, call_id)
    leg = _agent_leg(all_legs, principal.user_id) or _agent_leg(all_legs, call.agent_user_id)
    if leg is None or call.conference_sid is None:
        raise Conflict(f"call {call.id} has no agent in its conference yet")
    response = await provider.update_participant(call.conference_sid, leg.call_sid, muted=muted)
    await _checked(session, call, "mute", response)
    call.muted = muted
    await session.commit()
    return call


async def send_digits(
    container: Container,
    session: AsyncSession,
    principal: Principal,
    call_id: uuid.UUID,
    digits: str,
) -> Call:
    """Play DTMF `digits` on the borrower's leg (e.g. through their phone menu); the
    leg then rejoins the conference."""
    if not _DIGITS.match(digits):
        raise Invalid.field("digits", "1 to 32 of 0-9 * # and w (half-second pause)")
    call, all_legs, provider = await _live_call(container, session, principal, call_id)
    customer = _customer(all_legs)
    if customer is None or customer.answered_at is None or not live(customer):
        raise Conflict(f"call {call.id}: the borrower's leg is not connected")
    response = await provider.update_call(
        customer.call_sid, twiml=twiml.play_digits(digits, conference_twiml(provider, call))
    )
    await _checked(session, call, "send digits", response)
    await session.commit()
    return call


async def transfer(
    container: Container,
    session: AsyncSession,
    principal: Principal,
    call_id: uuid.UUID,
    to_agent_id: uuid.UUID,
    mode: str,
) -> Call:
    """Ring another available agent into the conference. Blind: the current agent's leg
    is hung up at once and the call (and its log) is theirs. Warm: the current agent
    stays until they leave (``leave``); the call becomes the new agent's then."""
    org_id = principal.organization_id
    await presence.user_in_org(session, org_id, to_agent_id)
    call, all_legs, provider = await _live_call(container, session, principal, call_id)
    if to_agent_id == call.agent_user_id:
        raise Invalid.field("toAgentId", "is already the call's agent")
    if call.status != CallStatus.IN_PROGRESS:
        raise Conflict(f"call {call.id} is not connected to the borrower yet")
    target = await presence.require_available(session, org_id, to_agent_id, who="the agent")
    assert target.endpoint is not None
    now = container.clock()
    try:
        await call_agent(container, session, call, to_agent_id, target.endpoint, first=False)
    except ProviderFailed:
        await session.commit()  # keep the refusal with the call's events
        raise
    presence.mark_busy(target, call.id, now)
    if mode == "blind":
        previous = call.agent_user_id
        leg = _agent_leg(all_legs, previous)
        call.agent_user_id = to_agent_id
        call.muted = False
        await presence.release(session, org_id, previous, call.id, now)
        await emit(session, call, "call.status_changed")
        if leg is not None:
            await _checked(
                session,
                call,
                "hang up",
                await provider.update_call(leg.call_sid, status="completed"),
            )
    await session.commit()
    return call


async def leave(
    container: Container, session: AsyncSession, principal: Principal, call_id: uuid.UUID
) -> Call:
    """The agent leaves a call another agent is on (the end of a warm transfer)."""
    call, all_legs, provider = await _live_call(container, session, principal, call_id)
    mine = _agent_leg(all_legs, principal.user_id)
    others = [leg for leg in all_legs if leg.role == "agent" and live(leg) and leg is not mine]
    if mine is None:
        raise Conflict(f"you are not on call {call.id}")
    if not any(leg.answered_at is not None for leg in others):
        raise Conflict("no other agent is on the call: hang up instead")
    response = await provider.update_call(mine.call_sid, status="completed")
    await _checked(session, call, "leave", response)
    await session.commit()
    return call


async def list_calls(
    session: AsyncSession,
    principal: Principal,
    *,
    awaiting_log: bool | None,
    agent: str | None,
    limit: int,
) -> list[Call]:
    query = select(Call).where(Call.organization_id == principal.organization_id)
    if agent is not None:
        if agent == "me":
            if principal.user_id is None:
                raise Invalid.field("agent", "this API token belongs to no user")
            agent_id = principal.user_id
        else:
            try:
                agent_id = uuid.UUID(agent)
            except ValueError:
                raise Invalid.field("agent", 'must be "me" or an agent id') from None
        query = query.where(Call.agent_user_id == agent_id)
    if awaiting_log is True:
        query = query.where(Call.status == CallStatus.AWAITING_LOG.value)
    elif awaiting_log is False:
        query = query.where(Call.status != CallStatus.AWAITING_LOG.value)
    rows = await session.scalars(query.order_by(Call.created_at.desc(), Call.id).limit(limit))
    return list(rows)


async def events(session: AsyncSession, org_id: uuid.UUID, call_id: uuid.UUID) -> list[CallEvent]:
    await calls.get(session, org_id, call_id)
    rows = await session.scalars(
        select(CallEvent)
        .where(CallEvent.call_id == call_id, CallEvent.organization_id == org_id)
        .order_by(CallEvent.id)
    )
    return list(rows)
