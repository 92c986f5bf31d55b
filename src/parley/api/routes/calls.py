"""Call attempts: ask to call a borrower (the gate decides, race-free), record the result.

- ``POST /api/cases/{caseId}/calls`` — 201 with ``status`` ``placed`` (go ahead and dial)
  or ``blocked`` (with the rule that refused it and the next allowed moment); with a
  Twilio voice account, ``connecting``: the call is dialed (click-to-call, see
  ``routes/voice.py``).
- ``POST /api/calls/{callId}/result`` — no_answer, voicemail, left_message, conversation,
  busy, not_in_service, network_failure; recorded once.
- ``GET /api/calls/{callId}``, ``GET /api/calls/{callId}/compliance``,
  ``GET /api/cases/{caseId}/calls``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from parley.api.deps import ContainerDep, PrincipalDep, SessionDep
from parley.api.schemas.compliance import (
    CallComplianceReport,
    CallCreate,
    CallList,
    CallOut,
    CallResultIn,
    ComplianceSummary,
)
from parley.api.schemas.voice import CallLogOut, RecordingOut
from parley.compliance import gate
from parley.services import call_logs, voice_calls
from parley.services import calls as svc
from parley.storage.models import Call, CallLog, ComplianceDecision

router = APIRouter(tags=["calls"])

CaseId = Annotated[uuid.UUID, Path(alias="caseId")]
CallId = Annotated[uuid.UUID, Path(alias="callId")]


def _utc(at: datetime | None) -> datetime | None:
    return at.astimezone(UTC) if at else None


def log_out(log: CallLog) -> CallLogOut:
    return CallLogOut(
        log_id=log.id,
        disposition=log.disposition,
        result=log.result,
        notes=log.notes,
        follow_up_date=log.follow_up_on,
        promise_amount=str(log.promise_amount) if log.promise_amount is not None else None,
        promise_currency=log.promise_currency,
        promise_date=log.promise_date,
        supersedes=log.supersedes_id,
        logged_by=log.logged_by_name,
        logged_at=log.created_at.astimezone(UTC),
    )


def call_out(
    call: Call, summary: ComplianceSummary | None = None, log: CallLog | None = None
) -> CallOut:
    recording = None
    if call.recording_sid is not None:
        recording = RecordingOut(
            recording_sid=call.recording_sid,
            url=call.recording_url,
            duration_seconds=call.recording_duration,
        )
    return CallOut(
        call_id=call.id,
        case_id=call.case_id,
        borrower_id=call.borrower_id,
        to=call.to_address,
        from_=call.from_address,
        status=call.status,
        # The latest log's result is the call's (it refines what the provider said).
        result=log.result if log is not None else call.result,
        purpose=call.purpose,
        prior_consent=call.prior_consent,
        placed_by=call.placed_by_name,
        placed_at=_utc(call.placed_at),
        ended_at=_utc(call.ended_at),
        notes=call.notes,
        created_at=call.created_at.astimezone(UTC),
        compliance=summary,
        direction=call.direction,
        agent_id=call.agent_user_id,
        awaiting_log=call.status == "awaiting_log",
        provider_status=call.provider_status,
        answered_at=_utc(call.answered_at),
        muted=call.muted,
        recording=recording,
        log=log_out(log) if log is not None else None,
    )


def _summary(decision: gate.Decision) -> ComplianceSummary:
    return ComplianceSummary(
        outcome=decision.outcome.value,
        reasons=list(decision.reasons),
        next_allowed_at=decision.next_allowed_at,
    )


@router.post("/api/cases/{caseId}/calls", response_model=CallOut, status_code=201)
async def place_call(
    case_id: CaseId,
    body: CallCreate,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
) -> CallOut:
    account = await voice_calls.voice_account(session, principal.organization_id)
    if account is None:
        # No voice account: the agent dials by hand and records the result afterwards.
        call, decision = await svc.place(
            container,
            session,
            principal,
            case_id,
            to=body.to,
            borrower_id=body.borrower_id,
            purpose=body.purpose,
        )
    else:
        call, decision = await voice_calls.place(
            container,
            session,
            principal,
            account,
            case_id,
            to=body.to,
            borrower_id=body.borrower_id,
            purpose=body.purpose,
        )
    return call_out(call, _summary(decision))


@router.get("/api/cases/{caseId}/calls", response_model=CallList)
async def list_calls(case_id: CaseId, session: SessionDep, principal: PrincipalDep) -> CallList:
    rows = await svc.list_for_case(session, principal.organization_id, case_id)
    logs = await call_logs.latest_logs(session, [c.id for c in rows])
    return CallList(calls=[call_out(c, log=logs.get(c.id)) for c in rows])


@router.get("/api/calls/{callId}", response_model=CallOut)
async def get_call(call_id: CallId, session: SessionDep, principal: PrincipalDep) -> CallOut:
    call = await svc.get(session, principal.organization_id, call_id)
    logs = await call_logs.latest_logs(session, [call.id])
    return call_out(call, log=logs.get(call.id))


@router.post("/api/calls/{callId}/result", response_model=CallOut)
async def record_result(
    call_id: CallId,
    body: CallResultIn,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
) -> CallOut:
    call = await svc.record_result(
        container,
        session,
        principal.organization_id,
        call_id,
        result=body.result,
        ended_at=body.ended_at,
        notes=body.notes,
    )
    return call_out(call)


@router.get("/api/calls/{callId}/compliance", response_model=CallComplianceReport)
async def call_compliance(
    call_id: CallId, session: SessionDep, principal: PrincipalDep
) -> CallComplianceReport:
    call = await svc.get(session, principal.organization_id, call_id)
    rows = await session.scalars(
        select(ComplianceDecision)
        .where(
            ComplianceDecision.call_id == call.id,
            ComplianceDecision.organization_id == principal.organization_id,
        )
        .order_by(ComplianceDecision.id)
    )
    return CallComplianceReport(
        call_id=call.id,
        status=call.status,
        decisions=[
            {
                "stage": d.stage,
                "outcome": d.outcome,
                "rules": d.rules,
                "facts": d.facts,
                "decidedAt": d.decided_at.astimezone(UTC).isoformat(),
            }
            for d in rows
        ],
    )
