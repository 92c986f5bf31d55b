"""Loading what a template renders against: a case, one of its borrowers, the agent, the org."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.domain.money import Money
from parley.services.errors import Invalid, NotFound
from parley.storage.models import Borrower, Case, CaseBorrower, Organization, User


@dataclass
class CaseContext:
    organization: Organization
    case: Case
    borrower: Borrower
    agent: User | None
    borrowers: list[Borrower]  # every borrower on the case, primary first

    @property
    def locale(self) -> str:
        return self.borrower.preferred_language or self.organization.default_locale or "en_US"

    def template_context(self, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        from parley.templates import case_context

        b, c, a, o = self.borrower, self.case, self.agent, self.organization
        return case_context(
            borrower={
                "first_name": b.first_name,
                "last_name": b.last_name,
                "full_name": f"{b.first_name} {b.last_name}".strip(),
                "timezone": b.timezone,
                "external_ref": b.external_ref,
            },
            case={
                "number": c.case_number,
                "case_number": c.case_number,
                "creditor": c.creditor,
                "outstanding_amount": Money(c.outstanding_amount, c.currency),
                "original_amount": Money(c.original_amount, c.currency),
                "currency": c.currency,
                "due_date": c.due_date,
                "days_past_due": days_past_due(c.due_date),
                "status": c.status,
            },
            agent=None if a is None else {"name": a.name, "email": a.email, "phone": a.phone},
            organization={"name": o.name, "phone": o.phone, "email": o.email},
            extra=variables or {},
        )


def days_past_due(due: date | None, today: date | None = None) -> int:
    if due is None:
        return 0
    today = today or datetime.now(UTC).date()
    return max(0, (today - due).days)


async def get_case(session: AsyncSession, org_id: uuid.UUID, case_id: uuid.UUID) -> Case:
    case = await session.scalar(
        select(Case).where(Case.id == case_id, Case.organization_id == org_id)
    )
    if case is None:
        raise NotFound(f"case {case_id} not found")
    return case


async def case_borrowers(session: AsyncSession, case: Case) -> list[tuple[Borrower, str]]:
    rows = await session.execute(
        select(Borrower, CaseBorrower.role)
        .join(CaseBorrower, CaseBorrower.borrower_id == Borrower.id)
        .where(CaseBorrower.case_id == case.id, Borrower.organization_id == case.organization_id)
        .order_by(CaseBorrower.role != "primary", Borrower.created_at)
    )
    return [(b, role) for b, role in rows.all()]


async def load(
    session: AsyncSession,
    org_id: uuid.UUID,
    case_id: uuid.UUID,
    borrower_id: uuid.UUID | None = None,
    acting_user_id: uuid.UUID | None = None,
) -> CaseContext:
    """The render context; `#agent.*` is the case's assigned agent, else the acting user."""
    case = await get_case(session, org_id, case_id)
    borrowers = await case_borrowers(session, case)
    if not borrowers:
        raise Invalid.field("caseId", "the case has no borrower to address")
    if borrower_id is None:
        borrower = borrowers[0][0]
    else:
        match = [b for b, _ in borrowers if b.id == borrower_id]
        if not match:
            raise Invalid.field("borrowerId", "is not a borrower on this case")
        borrower = match[0]
    org = await session.get(Organization, org_id)
    assert org is not None
    agent_id = case.assigned_agent_id or acting_user_id
    agent = await session.get(User, agent_id) if agent_id else None
    if agent is not None and agent.organization_id != org_id:
        agent = None
    return CaseContext(
        organization=org,
        case=case,
        borrower=borrower,
        agent=agent,
        borrowers=[b for b, _ in borrowers],
    )
