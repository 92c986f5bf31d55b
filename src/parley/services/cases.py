"""Cases: a debt (creditor, amounts, currency, due date, status) owed by one or more
borrowers, optionally assigned to an agent.

Amounts arrive as decimal strings and are kept as Decimal (never float). Days past due
is not stored: it is derived from the due date whenever a case is read. References in a
request (borrowers, the agent) must belong to the caller's organization; anything else
is an "unknown" 422, so another tenant's ids reveal nothing (DESIGN.md invariant 5).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from babel.numbers import is_currency
from sqlalchemy import exists, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.errors import Conflict, FieldError, Invalid, NotFound
from parley.storage.models import Borrower, Case, CaseBorrower, User

STATUSES = frozenset(
    {
        "open",
        "payment_plan",
        "promise_to_pay",
        "disputed",
        "cease_communication",
        "attorney_represented",
        "bankruptcy",
        "deceased",
        "paid",
        "closed",
    }
)
ROLES = frozenset({"primary", "co_borrower", "guarantor"})
MAX_INTEGER_DIGITS = 16  # Numeric(18, 2)
_AMOUNT = re.compile(r"^(-?)(\d+)(?:\.(\d+))?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NOT_CURRENCIES = frozenset({"XXX", "XTS"})  # "no currency" and "testing" codes
_CAMEL = {
    "case_number": "caseNumber",
    "original_amount": "originalAmount",
    "outstanding_amount": "outstandingAmount",
    "due_date": "dueDate",
    "assigned_agent_id": "assignedAgentId",
}
_NOT_NULL = (
    "case_number",
    "creditor",
    "original_amount",
    "outstanding_amount",
    "currency",
    "status",
)
_TEXT_MAX = {"case_number": 64, "creditor": 200}
_NUL = "must not contain NUL characters"  # PostgreSQL text cannot store them


@dataclass
class BorrowerLink:
    borrower_id: uuid.UUID
    role: str | None = None  # None: primary if first and no one else is, else co_borrower


@dataclass
class CaseRecord:
    case: Case
    borrowers: list[tuple[Borrower, str]]


def parse_amount(raw: str, field: str) -> Decimal:
    match = _AMOUNT.match(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        raise Invalid.field(field, 'must be a decimal string like "1234.50"', "invalid_amount")
    sign, whole, cents = match.groups()
    if sign and Decimal(raw) != 0:
        raise Invalid.field(field, "must not be negative", "negative_amount")
    if cents is not None and len(cents) > 2:
        raise Invalid.field(field, "must have at most 2 decimal places", "invalid_amount")
    if len(whole.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise Invalid.field(field, "is too large", "invalid_amount")
    return Decimal(f"{whole}.{cents or '0'}").quantize(Decimal("0.01"))


def check_currency(raw: str, field: str = "currency") -> str:
    code = raw.strip().upper()
    if len(code) != 3 or code in _NOT_CURRENCIES or not is_currency(code):
        raise Invalid.field(
            field, f"{raw!r} is not an ISO 4217 currency code like 'DKK'", "invalid_currency"
        )
    return code


def parse_due_date(raw: str, field: str = "dueDate") -> date:
    try:
        if not _DATE.match(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except (ValueError, TypeError):
        raise Invalid.field(field, "must be a date written YYYY-MM-DD", "invalid_date") from None


def _raise(errors: list[FieldError]) -> None:
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors)


def _clean_fields(changes: dict[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    clean: dict[str, Any] = {}
    errors: list[FieldError] = []
    for key, value in changes.items():
        name = _CAMEL.get(key, key)
        try:
            if isinstance(value, str) and "\x00" in value:
                raise Invalid.field(name, _NUL)
            if value is None:
                if key in _NOT_NULL:
                    raise Invalid.field(name, "may not be null", "required")
                clean[key] = None
            elif key in _TEXT_MAX:
                value = value.strip()
                if not value:
                    raise Invalid.field(name, "must not be empty", "required")
                if len(value) > _TEXT_MAX[key]:
                    raise Invalid.field(name, f"must be at most {_TEXT_MAX[key]} characters")
                clean[key] = value
            elif key in ("original_amount", "outstanding_amount"):
                clean[key] = parse_amount(value, name)
            elif key == "currency":
                clean[key] = check_currency(value)
            elif key == "due_date":
                clean[key] = value if isinstance(value, date) else parse_due_date(value)
            elif key == "status":
                if value not in STATUSES:
                    raise Invalid.field(name, "must be one of " + ", ".join(sorted(STATUSES)))
                clean[key] = value
            elif key == "assigned_agent_id":
                clean[key] = value
            else:
                raise Invalid.field(name, "is not a case field")
        except Invalid as exc:
            errors.extend(exc.errors)
    return clean, errors


async def _agent_errors(
    session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID | None
) -> list[FieldError]:
    if user_id is None or await session.scalar(
        select(exists().where(User.id == user_id, User.organization_id == org_id))
    ):
        return []
    return [FieldError("assignedAgentId", "unknown user", "unknown_user")]


def _link_field(links_field: str, i: int) -> str:
    return f"borrowerIds.{i}" if links_field == "borrowerIds" else f"borrowers.{i}.borrowerId"


async def _resolve_links(
    session: AsyncSession, org_id: uuid.UUID, links: Sequence[BorrowerLink], links_field: str
) -> tuple[list[tuple[uuid.UUID, str]], list[FieldError]]:
    """(borrower id, role) pairs with roles decided; errors for unknown or repeated ids."""
    if not links:
        return [], [FieldError(links_field, "a case needs at least one borrower", "required")]
    ids = [link.borrower_id for link in links]
    known = set(
        await session.scalars(
            select(Borrower.id).where(Borrower.organization_id == org_id, Borrower.id.in_(ids))
        )
    )
    errors: list[FieldError] = []
    seen: set[uuid.UUID] = set()
    for i, link in enumerate(links):
        if link.borrower_id not in known:
            errors.append(
                FieldError(_link_field(links_field, i), "unknown borrower", "unknown_borrower")
            )
        elif link.borrower_id in seen:
            errors.append(FieldError(_link_field(links_field, i), "is listed twice", "duplicate"))
        if link.role is not None and link.role not in ROLES:
            errors.append(
                FieldError(f"{links_field}.{i}.role", "must be one of " + ", ".join(sorted(ROLES)))
            )
        seen.add(link.borrower_id)
    implicit_primary = not any(link.role == "primary" for link in links)
    pairs = []
    for link in links:
        role = link.role or ("primary" if implicit_primary else "co_borrower")
        implicit_primary = implicit_primary and role != "primary"
        pairs.append((link.borrower_id, role))
    primaries = sum(role == "primary" for _, role in pairs)
    if primaries != 1:
        errors.append(
            FieldError(
                links_field, f"exactly one borrower must have the role primary (got {primaries})"
            )
        )
    return pairs, errors


async def _load(session: AsyncSession, cases: list[Case]) -> list[CaseRecord]:
    by_case: dict[uuid.UUID, list[tuple[Borrower, str]]] = {c.id: [] for c in cases}
    if cases:
        rows = await session.execute(
            select(CaseBorrower.case_id, CaseBorrower.role, Borrower)
            .join(Borrower, Borrower.id == CaseBorrower.borrower_id)
            .where(CaseBorrower.case_id.in_(list(by_case)))
            # primary first, then co_borrower before guarantor, then oldest first
            .order_by(
                CaseBorrower.role != "primary", CaseBorrower.role, Borrower.created_at, Borrower.id
            )
        )
        for case_id, role, borrower in rows:
            by_case[case_id].append((borrower, role))
    return [CaseRecord(c, by_case[c.id]) for c in cases]


async def _get_case(
    session: AsyncSession, org_id: uuid.UUID, case_id: uuid.UUID, *, lock: bool = False
) -> Case:
    query = select(Case).where(Case.id == case_id, Case.organization_id == org_id)
    case = await session.scalar(query.with_for_update() if lock else query)
    if case is None:
        raise NotFound(f"case {case_id} not found")
    return case


async def _number_taken(
    session: AsyncSession, org_id: uuid.UUID, number: str, case_id: uuid.UUID | None = None
) -> bool:
    query = exists().where(Case.organization_id == org_id, Case.case_number == number)
    if case_id is not None:
        query = query.where(Case.id != case_id)
    return bool(await session.scalar(select(query)))


def _duplicate_number(number: str) -> Conflict:
    return Conflict(
        f"case number {number} is already in use",
        [FieldError("caseNumber", "is already in use", "duplicate")],
    )


async def _commit(session: AsyncSession, number: str | None) -> None:
    try:
        await session.commit()
    except IntegrityError:  # lost a race with a concurrent request
        await session.rollback()
        raise (
            _duplicate_number(number)
            if number
            else Conflict("the case conflicts with existing data")
        ) from None


async def create(
    session: AsyncSession,
    org_id: uuid.UUID,
    fields: dict[str, Any],
    links: Sequence[BorrowerLink],
    *,
    links_field: str = "borrowerIds",
) -> CaseRecord:
    clean, errors = _clean_fields(
        {"status": "open", "due_date": None, "assigned_agent_id": None, **fields}
    )
    required = ("case_number", "creditor", "original_amount", "outstanding_amount", "currency")
    errors += [
        FieldError(_CAMEL.get(k, k), "is required", "required") for k in required if k not in fields
    ]
    errors += await _agent_errors(session, org_id, clean.get("assigned_agent_id"))
    pairs, link_errors = await _resolve_links(session, org_id, links, links_field)
    _raise(errors + link_errors)
    if await _number_taken(session, org_id, clean["case_number"]):
        raise _duplicate_number(clean["case_number"])
    # Ids are always generated: a caller-chosen id could probe other tenants' ids.
    case = Case(id=uuid.uuid4(), organization_id=org_id, **clean)
    session.add(case)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise _duplicate_number(clean["case_number"]) from None
    session.add_all(
        CaseBorrower(case_id=case.id, borrower_id=bid, organization_id=org_id, role=role)
        for bid, role in pairs
    )
    await _commit(session, clean["case_number"])
    return await get(session, org_id, case.id)


async def get(session: AsyncSession, org_id: uuid.UUID, case_id: uuid.UUID) -> CaseRecord:
    [record] = await _load(session, [await _get_case(session, org_id, case_id)])
    return record


async def search(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
    status: str | None = None,
    assigned_agent_id: uuid.UUID | None = None,
    borrower_id: uuid.UUID | None = None,
    q: str | None = None,
) -> tuple[list[CaseRecord], bool]:
    """Newest first, keyset-paginated; returns (page, whether more follow)."""
    if q and "\x00" in q:
        raise Invalid.field("q", _NUL)
    query = select(Case).where(Case.organization_id == org_id)
    if status is not None:
        if status not in STATUSES:
            raise Invalid.field("status", "must be one of " + ", ".join(sorted(STATUSES)))
        query = query.where(Case.status == status)
    if assigned_agent_id is not None:
        query = query.where(Case.assigned_agent_id == assigned_agent_id)
    if borrower_id is not None:
        query = query.where(
            exists().where(CaseBorrower.case_id == Case.id, CaseBorrower.borrower_id == borrower_id)
        )
    if q and q.strip():
        query = query.where(Case.case_number.istartswith(q.strip(), autoescape=True))
    if after is not None:
        query = query.where(tuple_(Case.created_at, Case.id) < tuple_(*after))
    query = query.order_by(Case.created_at.desc(), Case.id.desc()).limit(limit + 1)
    rows = list(await session.scalars(query))
    return await _load(session, rows[:limit]), len(rows) > limit


async def change(
    session: AsyncSession, org_id: uuid.UUID, case_id: uuid.UUID, changes: dict[str, Any]
) -> CaseRecord:
    clean, errors = _clean_fields(changes)
    if clean.get("assigned_agent_id") is not None:
        errors += await _agent_errors(session, org_id, clean["assigned_agent_id"])
    _raise(errors)
    case = await _get_case(session, org_id, case_id, lock=True)
    number = clean.get("case_number")
    if number is not None and await _number_taken(session, org_id, number, case.id):
        raise _duplicate_number(number)
    previous_agent = case.assigned_agent_id
    for key, value in clean.items():
        setattr(case, key, value)
    if "assigned_agent_id" in clean and clean["assigned_agent_id"] != previous_agent:
        # The case's conversations follow it (the case row is locked: see
        # parley.inbox.conversations for why that keeps new ones consistent).
        from parley.inbox import conversations
        from parley.storage.db import raw_connection

        await session.flush()
        await conversations.reassign_case(
            await raw_connection(session),
            org_id,
            case.id,
            clean["assigned_agent_id"],
            previous_agent,
            datetime.now(UTC),
        )
    await _commit(session, number)
    await session.refresh(case)  # updated_at is set by the database
    return await get(session, org_id, case.id)


async def link_borrower(
    session: AsyncSession,
    org_id: uuid.UUID,
    case_id: uuid.UUID,
    borrower_id: uuid.UUID,
    role: str = "co_borrower",
) -> CaseRecord:
    if role not in ROLES:
        raise Invalid.field("role", "must be one of " + ", ".join(sorted(ROLES)))
    case = await _get_case(session, org_id, case_id, lock=True)
    known = await session.scalar(
        select(exists().where(Borrower.id == borrower_id, Borrower.organization_id == org_id))
    )
    if not known:
        raise Invalid.field("borrowerId", "unknown borrower", "unknown_borrower")
    rows = await session.execute(
        select(CaseBorrower.borrower_id, CaseBorrower.role).where(CaseBorrower.case_id == case.id)
    )
    current = dict(rows.all())
    if borrower_id in current:
        raise Conflict(
            "the borrower is already on this case",
            [FieldError("borrowerId", "is already on this case", "duplicate")],
        )
    if role == "primary" and "primary" in current.values():
        raise Conflict(
            "the case already has a primary borrower",
            [FieldError("role", "the case already has a primary borrower")],
        )
    session.add(
        CaseBorrower(case_id=case.id, borrower_id=borrower_id, organization_id=org_id, role=role)
    )
    await _commit(session, None)
    return await get(session, org_id, case.id)
