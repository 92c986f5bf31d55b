"""Contact points: normalizing phone numbers and email addresses, and the contact-point
use cases (add, list, change, remove) of one borrower.

Every stored value is normalized (E.164 for phones, a validated address with a
lower-cased domain for email) so that an inbound message or a `to` on a send finds the
same contact point however the number or address was written.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.errors import Conflict, FieldError, Invalid, NotFound
from parley.storage.models import Borrower, ContactPoint, Message

KINDS = frozenset({"email", "phone"})
LABELS = frozenset({"mobile", "home", "work", "personal", "other"})
SOURCES = frozenset({"borrower_provided", "creditor_provided", "employer", "skip_trace", "other"})
_MAX_RAW = 320

_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: (
        "missing_country_code",
        "has no (valid) country code: write it as +<country code><number>, or give the "
        "borrower an address country so local numbers can be read",
    ),
    phonenumbers.NumberParseException.NOT_A_NUMBER: ("not_a_number", "is not a phone number"),
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: ("too_short", "is too short"),
    phonenumbers.NumberParseException.TOO_SHORT_NSN: ("too_short", "is too short"),
    phonenumbers.NumberParseException.TOO_LONG: ("too_long", "is too long"),
}


def normalize_phone(
    raw: str, default_region: str | None = None, *, field: str = "value", strict: bool = True
) -> str:
    """`raw` as E.164 ("+4520123456"); Invalid naming `field` and the reason otherwise.

    `default_region` (ISO 3166-1 alpha-2) is how a number without "+<country code>" is
    read, e.g. the borrower's address country. `strict=False` only asks for a plausible
    length in a real country: for *looking up* a number already on file (imported data,
    the seed document's "+4512345678", which is not an assigned Danish number), never
    for storing a new one.
    """
    text = (raw or "").strip(" \t")
    if not text:
        raise Invalid.field(field, "must not be empty", "required")
    if len(text) > _MAX_RAW or any(ord(c) < 32 for c in text):
        raise Invalid.field(field, "is not a phone number", "not_a_number")
    region = default_region.upper() if default_region else None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        code, message = _PARSE_REASONS.get(
            exc.error_type, ("not_a_number", "is not a phone number")
        )
        raise Invalid.field(field, message, code) from None
    plausible = not strict and phonenumbers.is_possible_number(number)
    if not plausible and not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_country_code(number.country_code)
        if where in (None, "ZZ"):
            raise Invalid.field(
                field,
                f"+{number.country_code} is not a country calling code",
                "missing_country_code",
            )
        raise Invalid.field(
            field, f"is not a valid number for region {where}", "invalid_for_region"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str, *, field: str = "value") -> str:
    """A bare, syntactically valid address with its domain lower-cased (no DNS lookups).

    Display names ("Bob <bob@example.com>") and CR/LF are refused: the value ends up in
    mail headers and must be exactly one address.
    """
    text = (raw or "").strip(" \t")
    if not text:
        raise Invalid.field(field, "must not be empty", "required")
    if "\r" in text or "\n" in text:
        raise Invalid.field(field, "must not contain line breaks", "invalid_email")
    if "<" in text or ">" in text:
        raise Invalid.field(
            field,
            "must be a bare address like bob@example.com, without a display name or angle brackets",
            "invalid_email",
        )
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise Invalid.field(
            field, f"is not a valid email address: {exc}", "invalid_email"
        ) from None
    local, _, domain = result.normalized.rpartition("@")
    return f"{local}@{domain.lower()}"


@dataclass
class ContactPointInput:
    kind: str
    value: str
    label: str | None = None
    source: str = "borrower_provided"
    is_primary: bool = False


def validate_input(
    cp: ContactPointInput, region: str | None, prefix: str = ""
) -> ContactPointInput:
    """A normalized copy of `cp`; raises Invalid listing every bad field (under `prefix`)."""
    errors: list[FieldError] = []
    value = cp.value
    if cp.kind not in KINDS:
        errors.append(FieldError(f"{prefix}type", "must be email or phone"))
    else:
        try:
            value = (
                normalize_email(cp.value, field=f"{prefix}value")
                if cp.kind == "email"
                else normalize_phone(cp.value, region, field=f"{prefix}value")
            )
        except Invalid as exc:
            errors.extend(exc.errors)
    errors.extend(_check_attributes({"label": cp.label, "source": cp.source}, prefix))
    if errors:
        raise Invalid(_detail(errors), errors)
    return ContactPointInput(cp.kind, value, cp.label, cp.source, cp.is_primary)


def _check_attributes(changes: dict[str, Any], prefix: str = "") -> list[FieldError]:
    errors = []
    if "label" in changes and changes["label"] is not None and changes["label"] not in LABELS:
        errors.append(FieldError(f"{prefix}label", "must be one of " + ", ".join(sorted(LABELS))))
    if "source" in changes and changes["source"] not in SOURCES:
        errors.append(FieldError(f"{prefix}source", "must be one of " + ", ".join(sorted(SOURCES))))
    if "is_primary" in changes and not isinstance(changes["is_primary"], bool):
        errors.append(FieldError(f"{prefix}isPrimary", "must be true or false"))
    return errors


def _detail(errors: list[FieldError]) -> str:
    return "; ".join(f"{e.field}: {e.message}" for e in errors)


def address_region(borrower: Borrower) -> str | None:
    return (borrower.address or {}).get("country")


async def _locked_borrower(
    session: AsyncSession, org_id: uuid.UUID, borrower_id: uuid.UUID
) -> Borrower:
    # The row lock serializes concurrent primary changes of one borrower.
    borrower = await session.scalar(
        select(Borrower)
        .where(Borrower.id == borrower_id, Borrower.organization_id == org_id)
        .with_for_update()
    )
    if borrower is None:
        raise NotFound(f"borrower {borrower_id} not found")
    return borrower


async def _make_primary(session: AsyncSession, cp: ContactPoint) -> None:
    await session.execute(
        update(ContactPoint)
        .where(
            ContactPoint.borrower_id == cp.borrower_id,
            ContactPoint.kind == cp.kind,
            ContactPoint.id != cp.id,
            ContactPoint.is_primary.is_(True),
        )
        .values(is_primary=False)
    )
    cp.is_primary = True


async def insert_contact_points(
    session: AsyncSession, borrower: Borrower, points: list[ContactPointInput]
) -> list[ContactPoint]:
    """Add already-validated points (no commit). The first of a kind, or one marked
    primary, becomes the borrower's primary of that kind."""
    has_primary = set(
        await session.scalars(
            select(ContactPoint.kind).where(
                ContactPoint.borrower_id == borrower.id, ContactPoint.is_primary.is_(True)
            )
        )
    )
    rows = []
    for p in points:
        row = ContactPoint(
            id=uuid.uuid4(),
            organization_id=borrower.organization_id,
            borrower_id=borrower.id,
            kind=p.kind,
            value=p.value,
            label=p.label,
            source=p.source,
            is_primary=False,
        )
        session.add(row)
        await session.flush()
        if p.is_primary or p.kind not in has_primary:
            await _make_primary(session, row)
            has_primary.add(p.kind)
        rows.append(row)
    await session.flush()
    return rows


async def _commit_or_conflict(session: AsyncSession, what: str) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"{what} is already a contact point of this borrower") from None


async def add(
    session: AsyncSession, org_id: uuid.UUID, borrower_id: uuid.UUID, cp: ContactPointInput
) -> ContactPoint:
    borrower = await _locked_borrower(session, org_id, borrower_id)
    clean = validate_input(cp, address_region(borrower))
    duplicate = await session.scalar(
        select(
            exists().where(
                ContactPoint.borrower_id == borrower.id,
                ContactPoint.kind == clean.kind,
                ContactPoint.value == clean.value,
            )
        )
    )
    if duplicate:
        raise Conflict(
            f"{clean.value} is already a contact point of this borrower",
            [FieldError("value", "already on file for this borrower", "duplicate")],
        )
    try:
        [row] = await insert_contact_points(session, borrower, [clean])
    except IntegrityError:  # a concurrent request added the same value
        await session.rollback()
        raise Conflict(f"{clean.value} is already a contact point of this borrower") from None
    await _commit_or_conflict(session, clean.value)
    return row


async def list_for_borrowers(
    session: AsyncSession, org_id: uuid.UUID, borrower_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[ContactPoint]]:
    out: dict[uuid.UUID, list[ContactPoint]] = {b: [] for b in borrower_ids}
    if not borrower_ids:
        return out
    rows = await session.scalars(
        select(ContactPoint)
        .where(ContactPoint.organization_id == org_id, ContactPoint.borrower_id.in_(borrower_ids))
        .order_by(
            ContactPoint.kind,
            ContactPoint.is_primary.desc(),
            ContactPoint.created_at,
            ContactPoint.id,
        )
    )
    for row in rows:
        out[row.borrower_id].append(row)
    return out


async def list_for_borrower(
    session: AsyncSession, org_id: uuid.UUID, borrower_id: uuid.UUID
) -> list[ContactPoint]:
    found = await session.scalar(
        select(exists().where(Borrower.id == borrower_id, Borrower.organization_id == org_id))
    )
    if not found:
        raise NotFound(f"borrower {borrower_id} not found")
    return (await list_for_borrowers(session, org_id, [borrower_id]))[borrower_id]


async def _get(session: AsyncSession, org_id: uuid.UUID, cp_id: uuid.UUID) -> ContactPoint:
    cp = await session.scalar(
        select(ContactPoint).where(ContactPoint.id == cp_id, ContactPoint.organization_id == org_id)
    )
    if cp is None:
        raise NotFound(f"contact point {cp_id} not found")
    await _locked_borrower(session, org_id, cp.borrower_id)
    return cp


async def change(
    session: AsyncSession, org_id: uuid.UUID, cp_id: uuid.UUID, changes: dict[str, Any]
) -> ContactPoint:
    """Change label, source or isPrimary. The value is not editable: a new number or
    address is a new contact point, so past messages keep pointing at what they used."""
    errors = [
        FieldError(_camel(k), "may not be null")
        for k in ("source", "is_primary")
        if k in changes and changes[k] is None
    ]
    errors += [
        FieldError(_camel(k), "cannot be changed; add a new contact point instead")
        for k in ("kind", "value")
        if k in changes
    ]
    errors += _check_attributes({k: v for k, v in changes.items() if v is not None})
    if errors:
        raise Invalid(_detail(errors), errors)
    cp = await _get(session, org_id, cp_id)
    if "label" in changes:
        cp.label = changes["label"]
    if "source" in changes:
        cp.source = changes["source"]
    if changes.get("is_primary") is True:
        await _make_primary(session, cp)
    elif changes.get("is_primary") is False:
        cp.is_primary = False
    await session.commit()
    return cp


async def remove(session: AsyncSession, org_id: uuid.UUID, cp_id: uuid.UUID) -> None:
    cp = await _get(session, org_id, cp_id)
    from parley.storage.models import Call, ConsentEvent

    used = False
    for referenced in (
        exists().where(Message.contact_point_id == cp.id),
        exists().where(Call.contact_point_id == cp.id),
        exists().where(ConsentEvent.contact_point_id == cp.id),
    ):
        used = used or bool(await session.scalar(select(referenced)))
    if used:
        raise Conflict(
            "messages, calls or consent records refer to this contact point; the "
            "communication record keeps it (mark another one primary instead)"
        )
    await session.delete(cp)
    await session.flush()
    if cp.is_primary:  # the oldest remaining one of its kind takes over
        successor = await session.scalar(
            select(ContactPoint)
            .where(ContactPoint.borrower_id == cp.borrower_id, ContactPoint.kind == cp.kind)
            .order_by(ContactPoint.created_at, ContactPoint.id)
            .limit(1)
        )
        if successor is not None:
            successor.is_primary = True
    await session.commit()


def _camel(name: str) -> str:
    return {"is_primary": "isPrimary", "kind": "type"}.get(name, name)
