"""/api/borrowers and /api/contact-points: borrowers with their phones and email addresses.

Writes need an authenticated principal (every role is at least an agent); every lookup is
scoped to the principal's organization, so another tenant's ids answer 404.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from parley.api import pagination
from parley.api.deps import PrincipalDep, SessionDep
from parley.api.schemas.borrowers import (
    AddressOut,
    BorrowerCreate,
    BorrowerOut,
    BorrowerPage,
    BorrowerUpdate,
    ContactPointCreate,
    ContactPointList,
    ContactPointOut,
    ContactPointUpdate,
)
from parley.services import borrowers as svc
from parley.services import contacts
from parley.storage.models import Borrower, ContactPoint

router = APIRouter(tags=["borrowers"])

BorrowerId = Annotated[uuid.UUID, Path(alias="borrowerId")]
ContactPointId = Annotated[uuid.UUID, Path(alias="contactPointId")]


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def contact_point_out(cp: ContactPoint) -> ContactPointOut:
    return ContactPointOut(
        contact_point_id=cp.id,
        borrower_id=cp.borrower_id,
        type=cp.kind,
        value=cp.value,
        label=cp.label,
        source=cp.source,
        is_primary=cp.is_primary,
        created_at=_utc(cp.created_at),
    )


def borrower_out(b: Borrower, points: list[ContactPoint]) -> BorrowerOut:
    return BorrowerOut(
        borrower_id=b.id,
        external_ref=b.external_ref,
        first_name=b.first_name,
        last_name=b.last_name,
        timezone=b.timezone,
        preferred_language=b.preferred_language,
        address=AddressOut(**b.address) if b.address else None,
        do_not_contact=b.do_not_contact,
        contact_points=[contact_point_out(cp) for cp in points],
        created_at=_utc(b.created_at),
        updated_at=_utc(b.updated_at),
    )


def _contact_input(body: ContactPointCreate) -> contacts.ContactPointInput:
    return contacts.ContactPointInput(
        kind=body.type,
        value=body.value,
        label=body.label,
        source=body.source,
        is_primary=body.is_primary,
    )


@router.post("/api/borrowers", response_model=BorrowerOut, status_code=status.HTTP_201_CREATED)
async def create_borrower(
    body: BorrowerCreate, session: SessionDep, principal: PrincipalDep
) -> BorrowerOut:
    fields = body.model_dump(
        by_alias=False, exclude_unset=True, exclude={"borrower_id", "contact_points"}
    )
    borrower, _ = await svc.create(
        session,
        principal.organization_id,
        fields,
        [_contact_input(cp) for cp in body.contact_points],
    )
    # Read back so the embedded list has the same order as every other read.
    points = await contacts.list_for_borrower(session, principal.organization_id, borrower.id)
    return borrower_out(borrower, points)


@router.get("/api/borrowers", response_model=BorrowerPage)
async def list_borrowers(
    session: SessionDep,
    principal: PrincipalDep,
    limit: int = 50,
    cursor: str | None = None,
    q: Annotated[
        str | None,
        Query(
            max_length=320,
            description=(
                "Name prefix (first, last or full name) or an exact email address / phone number"
            ),
        ),
    ] = None,
    external_ref: Annotated[str | None, Query(alias="externalRef", max_length=100)] = None,
) -> BorrowerPage:
    org = principal.organization_id
    rows, more = await svc.search(
        session,
        org,
        limit=pagination.clamp_limit(limit),
        after=pagination.decode(cursor),
        q=q,
        external_ref=external_ref,
    )
    points = await contacts.list_for_borrowers(session, org, [b.id for b in rows])
    next_cursor = pagination.encode(rows[-1].created_at, rows[-1].id) if more else None
    return BorrowerPage(
        items=[borrower_out(b, points[b.id]) for b in rows], next_cursor=next_cursor
    )


@router.get("/api/borrowers/{borrowerId}", response_model=BorrowerOut)
async def get_borrower(
    borrower_id: BorrowerId, session: SessionDep, principal: PrincipalDep
) -> BorrowerOut:
    borrower = await svc.get(session, principal.organization_id, borrower_id)
    points = await contacts.list_for_borrower(session, principal.organization_id, borrower_id)
    return borrower_out(borrower, points)


@router.patch("/api/borrowers/{borrowerId}", response_model=BorrowerOut)
async def update_borrower(
    borrower_id: BorrowerId, body: BorrowerUpdate, session: SessionDep, principal: PrincipalDep
) -> BorrowerOut:
    changes = body.model_dump(by_alias=False, exclude_unset=True)
    borrower = await svc.change(session, principal.organization_id, borrower_id, changes)
    points = await contacts.list_for_borrower(session, principal.organization_id, borrower_id)
    return borrower_out(borrower, points)


@router.delete(
    "/api/borrowers/{borrowerId}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
async def delete_borrower(
    borrower_id: BorrowerId, session: SessionDep, principal: PrincipalDep
) -> Response:
    await svc.delete(session, principal.organization_id, borrower_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/borrowers/{borrowerId}/contact-points",
    response_model=ContactPointOut,
    status_code=status.HTTP_201_CREATED,
)
async def add_contact_point(
    borrower_id: BorrowerId, body: ContactPointCreate, session: SessionDep, principal: PrincipalDep
) -> ContactPointOut:
    cp = await contacts.add(session, principal.organization_id, borrower_id, _contact_input(body))
    return contact_point_out(cp)


@router.get("/api/borrowers/{borrowerId}/contact-points", response_model=ContactPointList)
async def list_contact_points(
    borrower_id: BorrowerId, session: SessionDep, principal: PrincipalDep
) -> ContactPointList:
    points = await contacts.list_for_borrower(session, principal.organization_id, borrower_id)
    return ContactPointList(items=[contact_point_out(cp) for cp in points])


@router.patch("/api/contact-points/{contactPointId}", response_model=ContactPointOut)
async def update_contact_point(
    contact_point_id: ContactPointId,
    body: ContactPointUpdate,
    session: SessionDep,
    principal: PrincipalDep,
) -> ContactPointOut:
    changes = body.model_dump(by_alias=False, exclude_unset=True)
    cp = await contacts.change(session, principal.organization_id, contact_point_id, changes)
    return contact_point_out(cp)


@router.delete(
    "/api/contact-points/{contactPointId}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
async def delete_contact_point(
    contact_point_id: ContactPointId, session: SessionDep, principal: PrincipalDep
) -> Response:
    await contacts.remove(session, principal.organization_id, contact_point_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
