"""Resolving who a message goes to: a contact point of a borrower on the case."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.domain.channels import Channel, contact_kind_for
from parley.services.errors import Invalid
from parley.storage.models import Borrower, ContactPoint


def normalize(channel: Channel, raw: str, region: str | None) -> str:
    from parley.services.contacts import normalize_email, normalize_phone

    try:
        if channel is Channel.EMAIL:
            return normalize_email(raw)
        # Lookup, not storage: a plausible number is enough to find a stored contact
        # point (the seed's +4512345678 is unassigned but well-formed).
        return normalize_phone(raw, default_region=region, strict=False)
    except Invalid as exc:
        message = exc.errors[0].message if exc.errors else exc.detail
        raise Invalid.field("to", message, "invalid_recipient") from None


async def resolve(
    session: AsyncSession,
    org_id: uuid.UUID,
    borrowers: list[Borrower],
    channel: Channel,
    to: str | None,
    *,
    contact_point_id: uuid.UUID | None = None,
) -> tuple[Borrower, ContactPoint]:
    """The (borrower, contact point) for `to`; the primary contact point when `to` is None.

    Parley only writes to contact points it knows belong to a borrower on the case: that
    is what lets the compliance gate reason about consent and origin of the address.
    """
    kind = contact_kind_for(channel)
    ids = [b.id for b in borrowers]
    by_id = {b.id: b for b in borrowers}
    query = select(ContactPoint).where(
        ContactPoint.organization_id == org_id,
        ContactPoint.borrower_id.in_(ids),
        ContactPoint.kind == kind.value,
    )
    if contact_point_id is not None:
        cp = await session.scalar(query.where(ContactPoint.id == contact_point_id))
        if cp is None:
            raise Invalid.field("to", "that contact point is not on this case", "unknown_recipient")
        return by_id[cp.borrower_id], cp
    if to is not None:
        region = None
        if borrowers and borrowers[0].address:
            region = (borrowers[0].address or {}).get("country")
        value = normalize(channel, to, region)
        cp = await session.scalar(query.where(ContactPoint.value == value).limit(1))
        if cp is None:
            raise Invalid.field(
                "to",
                f"{value} is not a contact point of a borrower on this case; add it "
                "with POST /api/borrowers/{borrowerId}/contact-points first",
                "unknown_recipient",
            )
        return by_id[cp.borrower_id], cp
    cps = list(await session.scalars(query))
    if not cps:
        raise Invalid.field(
            "to",
            f"no {kind.value} contact point is on file for the case's "
            "borrowers; give `to` or add one",
            "no_contact_point",
        )
    order = {bid: i for i, bid in enumerate(ids)}
    cps.sort(key=lambda c: (order[c.borrower_id], not c.is_primary, c.created_at))
    return by_id[cps[0].borrower_id], cps[0]
