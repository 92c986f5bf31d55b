"""Call attempts: asked for, gated, recorded — race-free against the frequency caps.

An agent (or a dialer integration) asks to call a borrower on a case. The gate decides
with the call's facts under the per-(borrower, case) advisory lock; the call row (placed
or blocked) and its decision are written in that same transaction, so 50 agents pressing
"call" at once can never together exceed the cap. A call that is not allowed now is
blocked (an agent cannot wait in the middle of dialing); its decision says when the next
allowed moment is.

The result (no answer, voicemail, conversation, busy, ...) is recorded once, afterwards;
it decides what the call counts for: calls that never connected are not counted (Reg F
1006.14(b)(3)), and a conversation starts the 7-day post-conversation period.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.compliance import caps, gate
from parley.compliance.assess import PURPOSES, REPLY_PURPOSES, assess
from parley.domain.channels import Channel
from parley.inbox import conversations
from parley.services import activity, contactability, recipients
from parley.services import context as case_context
from parley.services.auth import Principal
from parley.services.errors import Conflict, Invalid, NotFound
from parley.storage.db import raw_connection
from parley.storage.models import Call

if TYPE_CHECKING:
    from parley.bootstrap import Container

RESULTS = frozenset(r.value for r in caps.AttemptResult) - {
    "pending",
    "sent",
    "delivered",
    "not_dialed",  # set by click-to-call only (services/voice_calls.py)
}


async def place(
    container: Container,
    session: AsyncSession,
    principal: Principal,
    case_id: uuid.UUID,
    *,
    to: str | None,
    borrower_id: uuid.UUID | None,
    purpose: str = "collection",
    from_address: str | None = None,
    on_allowed: Callable[[AsyncSession, Call], Awaitable[None]] | None = None,
) -> tuple[Call, gate.Decision]:
    """Gate and record one call attempt. `on_allowed` runs inside the same transaction
    when the gate allows the call (click-to-call sets its provider fields and makes the
    agent busy there, so the attempt and the agent's state commit together).
    `from_address` is the caller id an allowed call is placed with (click-to-call: the
    voice account's number); it is part of the call's append-only record, so it is
    written with the row. A blocked call is placed from nowhere: its `from` stays null."""
    if purpose not in PURPOSES - REPLY_PURPOSES:
        raise Invalid.field(
            "purpose", "must be one of " + ", ".join(sorted(PURPOSES - REPLY_PURPOSES))
        )
    org_id = principal.organization_id
    ctx = await case_context.load(session, org_id, case_id, borrower_id)
    borrowers = [ctx.borrower] if borrower_id is not None else ctx.borrowers
    borrower, contact = await recipients.resolve(session, org_id, borrowers, Channel.VOICE, to)
    now = container.clock()
    conn = await raw_connection(session)
    (attempt,) = await contactability.load_contexts(
        conn,
        [
            contactability.AttemptRequest(
                organization_id=str(org_id),
                case_id=str(ctx.case.id),
                borrower_id=str(borrower.id),
                contact_point_id=str(contact.id),
                channel=Channel.VOICE,
                purpose=purpose,
                immediate=True,
            )
        ],
        now,
        lock=True,
    )
    decision = assess(attempt)
    call = Call(
        id=uuid.uuid4(),
        organization_id=org_id,
        case_id=ctx.case.id,
        borrower_id=borrower.id,
        contact_point_id=contact.id,
        to_address=contact.value,
        from_address=from_address if decision.allowed else None,
        direction="outbound",
        status="placed" if decision.allowed else "blocked",
        prior_consent=attempt.prior_consent,
        purpose=purpose,
        placed_by_user_id=principal.user_id,
        placed_by_name=principal.name,
        placed_at=now if decision.allowed else None,
        created_at=now,
    )
    session.add(call)
    await session.flush()
    if decision.allowed and on_allowed is not None:
        await on_allowed(session, call)
        await session.flush()
    await conn.execute(
        "INSERT INTO compliance_decisions (organization_id, call_id, stage, outcome, "
        "defer_until, rules, facts) VALUES (%s, %s, 'send', %s, %s, %s, %s)",
        (
            org_id,
            call.id,
            decision.outcome.value,
            decision.defer_until,
            orjson.dumps(decision.rules_record()).decode(),
            orjson.dumps(decision.facts_record()).decode(),
        ),
    )
    await touch_conversation(
        conn, call, now, "Call placed" if decision.allowed else "Call blocked by the gate"
    )
    await session.commit()  # releases the advisory lock with the attempt recorded
    return call, decision


async def touch_conversation(conn: Any, call: Call, at: datetime, preview: str) -> None:
    """Calls are part of the borrower's conversation on the case (the unified inbox)."""
    await conversations.touch(
        conn,
        conversations.Item(
            organization_id=call.organization_id,
            kind="call",
            item_id=call.id,
            channel=Channel.VOICE.value,
            direction=call.direction,
            at=at,
            preview=preview,
            case_id=call.case_id,
            borrower_id=call.borrower_id,
        ),
    )


async def get(session: AsyncSession, org_id: uuid.UUID, call_id: uuid.UUID) -> Call:
    call = await session.scalar(
        select(Call).where(Call.id == call_id, Call.organization_id == org_id)
    )
    if call is None:
        raise NotFound(f"call {call_id} not found")
    return call


async def record_result(
    container: Container,
    session: AsyncSession,
    org_id: uuid.UUID,
    call_id: uuid.UUID,
    *,
    result: str,
    ended_at: datetime | None,
    notes: str | None,
) -> Call:
    if result not in RESULTS:
        raise Invalid.field("result", "must be one of " + ", ".join(sorted(RESULTS)))
    call = await session.scalar(
        select(Call).where(Call.id == call_id, Call.organization_id == org_id).with_for_update()
    )
    if call is None:
        raise NotFound(f"call {call_id} not found")
    if call.status == "blocked":
        raise Conflict("the call was blocked by the compliance gate; it has no result")
    if call.provider_account_id is not None:
        # Dialed through the voice provider: the provider reports how it ended and the
        # agent's interaction log closes it (services/voice_calls.py).
        raise Conflict(
            f"call {call.id} was dialed through the voice provider: submit its log "
            f"(POST /api/calls/{call.id}/log)"
        )
    if call.result is not None:
        raise Conflict(f"the call's result is already recorded ({call.result})")
    now = container.clock()
    if ended_at is not None:
        if ended_at.tzinfo is None:
            raise Invalid.field("endedAt", "must include a timezone")
        if call.placed_at and ended_at < call.placed_at:
            raise Invalid.field("endedAt", "is before the call was placed")
        if ended_at > now:
            raise Invalid.field("endedAt", "is in the future")
    call.result = result
    call.ended_at = ended_at or now
    call.result_recorded_at = now
    call.notes = notes
    call.status = "completed"
    placed, ended = call.placed_at, call.ended_at
    await activity.emit(
        await raw_connection(session),
        str(org_id),
        "call.completed",
        {
            "callId": str(call.id),
            "caseId": str(call.case_id),
            "borrowerId": str(call.borrower_id),
            "direction": call.direction,
            "from": call.from_address,
            "to": call.to_address,
            "status": result,
            "durationSeconds": int((ended - placed).total_seconds()) if placed else None,
            "timestamp": ended,
        },
    )
    await session.flush()
    label = result.replace("_", " ")
    await touch_conversation(
        await raw_connection(session),
        call,
        now,
        conversations.preview_of(f"Call: {label}", notes),
    )
    await session.commit()
    return call


async def list_for_case(
    session: AsyncSession, org_id: uuid.UUID, case_id: uuid.UUID, limit: int = 100
) -> list[Call]:
    await case_context.load(session, org_id, case_id, None)
    rows = await session.scalars(
        select(Call)
        .where(Call.case_id == case_id, Call.organization_id == org_id)
        .order_by(Call.created_at.desc())
        .limit(limit)
    )
    return list(rows)
