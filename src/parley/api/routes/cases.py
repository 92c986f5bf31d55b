"""/api/cases: collection cases, their borrowers, and derived days past due.

Reading needs any authenticated principal; creating, changing and linking borrowers
needs a supervisor or above. Every lookup is scoped to the principal's organization.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from parley.api import pagination
from parley.api.deps import ContainerDep, PrincipalDep, SessionDep, SupervisorDep
from parley.api.schemas.cases import (
    CaseBorrowerLink,
    CaseBorrowerOut,
    CaseCreate,
    CaseOut,
    CasePage,
    CaseStatus,
    CaseUpdate,
)
from parley.services import cases as svc
from parley.services.context import days_past_due
from parley.services.errors import FieldError, Invalid

router = APIRouter(tags=["cases"])

CaseId = Annotated[uuid.UUID, Path(alias="caseId")]


def _today(container: ContainerDep) -> date:
    return container.clock().astimezone(UTC).date()


def case_out(record: svc.CaseRecord, today: date) -> CaseOut:
    c = record.case
    return CaseOut(
        case_id=c.id,
        case_number=c.case_number,
        creditor=c.creditor,
        original_amount=f"{c.original_amount:.2f}",
        outstanding_amount=f"{c.outstanding_amount:.2f}",
        currency=c.currency,
        due_date=c.due_date.isoformat() if c.due_date else None,
        days_past_due=days_past_due(c.due_date, today),
        status=c.status,
        assigned_agent_id=c.assigned_agent_id,
        borrowers=[
            CaseBorrowerOut(
                borrower_id=b.id, role=role, first_name=b.first_name, last_name=b.last_name
            )
            for b, role in record.borrowers
        ],
        created_at=_utc(c.created_at),
        updated_at=_utc(c.updated_at),
    )


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def _links(body: CaseCreate) -> tuple[list[svc.BorrowerLink], str]:
    if body.borrower_ids is not None and body.borrowers is not None:
        raise Invalid(
            "give either borrowerIds or borrowers, not both",
            [FieldError("borrowers", "give either borrowerIds or borrowers, not both")],
        )
    if body.borrowers is not None:
        return [svc.BorrowerLink(b.borrower_id, b.role) for b in body.borrowers], "borrowers"
    return [svc.BorrowerLink(bid) for bid in body.borrower_ids or []], "borrowerIds"


@router.post("/api/cases", response_model=CaseOut, status_code=status.HTTP_201_CREATED)
async def create_case(
    body: CaseCreate, session: SessionDep, principal: SupervisorDep, container: ContainerDep
) -> CaseOut:
    links, links_field = _links(body)
    fields = body.model_dump(
        by_alias=False, exclude_unset=True, exclude={"case_id", "borrower_ids", "borrowers"}
    )
    record = await svc.create(
        session,
        principal.organization_id,
        fields,
        links,
        links_field=links_field,
    )
    return case_out(record, _today(container))


@router.get("/api/cases", response_model=CasePage)
async def list_cases(
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
    limit: int = 50,
    cursor: str | None = None,
    status: CaseStatus | None = None,
    assigned_agent_id: Annotated[uuid.UUID | None, Query(alias="assignedAgentId")] = None,
    borrower_id: Annotated[uuid.UUID | None, Query(alias="borrowerId")] = None,
    q: Annotated[str | None, Query(max_length=64, description="Case number prefix")] = None,
) -> CasePage:
    records, more = await svc.search(
        session,
        principal.organization_id,
        limit=pagination.clamp_limit(limit),
        after=pagination.decode(cursor),
        status=status,
        assigned_agent_id=assigned_agent_id,
        borrower_id=borrower_id,
        q=q,
    )
    last = records[-1].case if records else None
    today = _today(container)
    return CasePage(
        items=[case_out(r, today) for r in records],
        next_cursor=pagination.encode(last.created_at, last.id) if more and last else None,
    )


@router.get("/api/cases/{caseId}", response_model=CaseOut)
async def get_case(
    case_id: CaseId, session: SessionDep, principal: PrincipalDep, container: ContainerDep
) -> CaseOut:
    record = await svc.get(session, principal.organization_id, case_id)
    return case_out(record, _today(container))


@router.patch("/api/cases/{caseId}", response_model=CaseOut)
async def update_case(
    case_id: CaseId,
    body: CaseUpdate,
    session: SessionDep,
    principal: SupervisorDep,
    container: ContainerDep,
) -> CaseOut:
    changes = body.model_dump(by_alias=False, exclude_unset=True)
    record = await svc.change(session, principal.organization_id, case_id, changes)
    return case_out(record, _today(container))


@router.post(
    "/api/cases/{caseId}/borrowers", response_model=CaseOut, status_code=status.HTTP_201_CREATED
)
async def link_borrower(
    case_id: CaseId,
    body: CaseBorrowerLink,
    session: SessionDep,
    principal: SupervisorDep,
    container: ContainerDep,
) -> CaseOut:
    record = await svc.link_borrower(
        session, principal.organization_id, case_id, body.borrower_id, body.role
    )
    return case_out(record, _today(container))
