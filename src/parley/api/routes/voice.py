"""Click-to-call: live controls, the mandatory interaction log, open logs, presence.

- ``POST /api/calls/{callId}/hangup`` | ``/mute`` ``{"muted": true}`` |
  ``/dtmf`` ``{"digits": "1234#"}`` | ``/transfer`` ``{"toAgentId", "mode"}`` | ``/leave``
- ``POST /api/calls/{callId}/log`` — disposition, notes, followUpDate (promiseAmount and
  promiseDate for promise_to_pay); closes an ``awaiting_log`` call.
- ``GET /api/calls?awaitingLog=true&agent=me`` — e.g. the agent's open logs.
- ``GET /api/calls/{callId}/events`` — every provider callback about the call.
- ``PUT /api/agents/me/presence``, ``GET /api/agents/presence``.
"""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Path, Query

from parley.api.deps import ContainerDep, PrincipalDep, SessionDep
from parley.api.routes.calls import call_out
from parley.api.schemas.compliance import CallList, CallOut
from parley.api.schemas.voice import (
    CallEventList,
    CallEventOut,
    CallLogIn,
    DigitsIn,
    MuteIn,
    PresenceIn,
    PresenceList,
    PresenceOut,
    TransferIn,
)
from parley.services import call_logs, presence, voice_calls
from parley.services.errors import Invalid
from parley.storage.models import AgentPresence, User

router = APIRouter(tags=["calls"])

CallId = Annotated[uuid.UUID, Path(alias="callId")]


@router.get("/api/calls", response_model=CallList)
async def list_calls(
    session: SessionDep,
    principal: PrincipalDep,
    awaiting_log: Annotated[bool | None, Query(alias="awaitingLog")] = None,
    agent: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CallList:
    rows = await voice_calls.list_calls(
        session, principal, awaiting_log=awaiting_log, agent=agent, limit=limit
    )
    logs = await call_logs.latest_logs(session, [c.id for c in rows])
    return CallList(calls=[call_out(c, log=logs.get(c.id)) for c in rows])


@router.post("/api/calls/{callId}/log", response_model=CallOut)
async def submit_log(
    call_id: CallId,
    body: CallLogIn,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
) -> CallOut:
    call, log = await call_logs.submit_log(
        container,
        session,
        principal,
        call_id,
        call_logs.LogInput(
            disposition=body.disposition,
            notes=body.notes,
            follow_up_date=body.follow_up_date,
            promise_amount=body.promise_amount,
            promise_date=body.promise_date,
            correction=body.correction,
        ),
    )
    return call_out(call, log=log)


@router.post("/api/calls/{callId}/hangup", response_model=CallOut)
async def hang_up(
    call_id: CallId, session: SessionDep, principal: PrincipalDep, container: ContainerDep
) -> CallOut:
    return call_out(await voice_calls.hang_up(container, session, principal, call_id))


@router.post("/api/calls/{callId}/mute", response_model=CallOut)
async def mute(
    call_id: CallId,
    body: MuteIn,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
) -> CallOut:
    return call_out(await voice_calls.mute(container, session, principal, call_id, body.muted))


@router.post("/api/calls/{callId}/dtmf", response_model=CallOut)
async def dtmf(
    call_id: CallId,
    body: DigitsIn,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
) -> CallOut:
    return call_out(
        await voice_calls.send_digits(container, session, principal, call_id, body.digits)
    )


@router.post("/api/calls/{callId}/transfer", response_model=CallOut)
async def transfer(
    call_id: CallId,
    body: TransferIn,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
) -> CallOut:
    call = await voice_calls.transfer(
        container, session, principal, call_id, body.to_agent_id, body.mode
    )
    return call_out(call)


@router.post("/api/calls/{callId}/leave", response_model=CallOut)
async def leave(
    call_id: CallId, session: SessionDep, principal: PrincipalDep, container: ContainerDep
) -> CallOut:
    return call_out(await voice_calls.leave(container, session, principal, call_id))


@router.get("/api/calls/{callId}/events", response_model=CallEventList)
async def call_events(
    call_id: CallId, session: SessionDep, principal: PrincipalDep
) -> CallEventList:
    rows = await voice_calls.events(session, principal.organization_id, call_id)
    return CallEventList(
        events=[
            CallEventOut(
                kind=e.kind,
                call_sid=e.call_sid,
                provider_status=e.provider_status,
                occurred_at=e.occurred_at.astimezone(UTC),
                applied=e.applied,
                raw=e.raw,
            )
            for e in rows
        ]
    )


def _presence_out(user: User, row: AgentPresence | None) -> PresenceOut:
    return PresenceOut(
        agent_id=user.id,
        name=user.name,
        status=row.status if row else "offline",
        endpoint=row.endpoint if row else None,
        busy_call_id=row.busy_call_id if row else None,
        updated_at=row.updated_at.astimezone(UTC) if row else None,
    )


@router.put("/api/agents/me/presence", response_model=PresenceOut)
async def set_presence(
    body: PresenceIn, session: SessionDep, principal: PrincipalDep, container: ContainerDep
) -> PresenceOut:
    if principal.user_id is None:
        raise Invalid("this API token belongs to no user: presence is an agent's")
    user = await presence.user_in_org(session, principal.organization_id, principal.user_id)
    row = await presence.set_status(
        session,
        principal.organization_id,
        principal.user_id,
        body.status,
        body.endpoint,
        container.clock(),
    )
    await session.commit()
    return _presence_out(user, row)


@router.get("/api/agents/presence", response_model=PresenceList)
async def list_presence(session: SessionDep, principal: PrincipalDep) -> PresenceList:
    rows = await presence.list_for_org(session, principal.organization_id)
    return PresenceList(agents=[_presence_out(user, row) for user, row in rows])
