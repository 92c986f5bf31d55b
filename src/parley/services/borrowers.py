"""Borrowers: create (with contact points, all or nothing), read, search, change, delete.

Reference values are validated against real data, not patterns: IANA time zones
(zoneinfo), locales (Babel/CLDR, stored normalized like "da_DK"), ISO 3166-1 countries.
Every query is scoped to the caller's organization (DESIGN.md invariant 5).
"""

from __future__ import annotations

import contextlib
import uuid
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.core import parse_locale
from sqlalchemy import exists, func, or_, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services import contacts
from parley.services.contacts import ContactPointInput
from parley.services.errors import Conflict, FieldError, Invalid, NotFound
from parley.storage.models import (
    Borrower,
    Call,
    CaseBorrower,
    ConsentEvent,
    ContactPoint,
    Message,
    Thread,
)

NAME_MAX = 100
EXTERNAL_REF_MAX = 100
ADDRESS_FIELDS = {"line1": 200, "line2": 200, "city": 100, "region": 100, "postal_code": 20}
# Exceptionally reserved or user-assigned codes CLDR lists as territories but that name no
# country a borrower can live in. XK (Kosovo) stays: it is in common use, and phones know it.
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "ZZ", "XA", "XB"})
_CAMEL = {
    "external_ref": "externalRef",
    "first_name": "firstName",
    "last_name": "lastName",
    "preferred_language": "preferredLanguage",
    "do_not_contact": "doNotContact",
    "postal_code": "postalCode",
}
_NOT_NULL = ("first_name", "last_name", "do_not_contact")
_NUL = "must not contain NUL characters"  # PostgreSQL text cannot store them


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    codes = Locale("en").territories
    return frozenset(c for c in codes if len(c) == 2 and c.isalpha()) - _NOT_COUNTRIES


def check_timezone(name: str, field: str = "timezone") -> str:
    if name not in _time_zones():
        raise Invalid.field(
            field,
            f"{name!r} is not an IANA time zone name like 'Europe/Copenhagen'",
            "invalid_timezone",
        )
    return name


def check_locale(raw: str, field: str = "preferredLanguage") -> str:
    """BCP 47 ("da-DK") or POSIX ("da_DK.UTF-8") -> Babel's normalized form ("da_DK")."""
    text = raw.strip().replace("-", "_")
    try:
        language, territory, *_ = parse_locale(text)
        locale = Locale.parse(text)
    except (ValueError, TypeError, UnknownLocaleError):
        raise Invalid.field(
            field,
            f"{raw!r} is not a known language or locale like 'en' or 'da-DK'",
            "invalid_locale",
        ) from None
    # Babel silently maps an unknown region to a likely one (en_ZZ -> en_US): refuse that.
    if language == "root" or (territory and locale.territory != territory.upper()):
        raise Invalid.field(field, f"{raw!r} is not a known locale", "invalid_locale")
    return str(Locale(locale.language, locale.territory, locale.script, locale.variant))


def check_country(raw: str, field: str = "address.country") -> str:
    code = raw.strip().upper()
    if code not in _countries():
        raise Invalid.field(
            field, f"{raw!r} is not an ISO 3166-1 alpha-2 country code like 'DK'", "invalid_country"
        )
    return code


def _clean_fields(changes: dict[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """Validate and normalize borrower fields (snake_case keys); collect every error."""
    clean: dict[str, Any] = {}
    errors: list[FieldError] = []

    checks: dict[str, Callable[[Any], Any]] = {
        "timezone": check_timezone,
        "preferred_language": check_locale,
        "address": _clean_address,
    }

    def fail(key: str, message: str, code: str = "invalid") -> None:
        errors.append(FieldError(_CAMEL.get(key, key), message, code))

    for key, value in changes.items():
        if isinstance(value, str) and "\x00" in value:
            fail(key, _NUL)
        elif value is None:
            if key in _NOT_NULL:
                fail(key, "may not be null", "required")
            clean[key] = None
        elif key in ("first_name", "last_name"):
            value = value.strip()
            if not value:
                fail(key, "must not be empty", "required")
            elif len(value) > NAME_MAX:
                fail(key, f"must be at most {NAME_MAX} characters")
            clean[key] = value
        elif key == "external_ref":
            value = value.strip()
            if len(value) > EXTERNAL_REF_MAX:
                fail(key, f"must be at most {EXTERNAL_REF_MAX} characters")
            clean[key] = value or None
        elif key in checks:
            try:
                clean[key] = checks[key](value)
            except Invalid as exc:
                errors.extend(exc.errors)
        elif key == "do_not_contact":
            clean[key] = bool(value)
        else:
            fail(key, "is not a borrower field")
    return clean, errors


def _clean_address(address: dict[str, Any]) -> dict[str, Any]:
    errors: list[FieldError] = []
    out: dict[str, Any] = {}
    for key, limit in ADDRESS_FIELDS.items():
        value = (address.get(key) or "").strip() or None
        if value and "\x00" in value:
            errors.append(FieldError(f"address.{_CAMEL.get(key, key)}", _NUL))
        if value and len(value) > limit:
            errors.append(
                FieldError(f"address.{_CAMEL.get(key, key)}", f"must be at most {limit} characters")
            )
        out[key] = value
    try:
        out["country"] = check_country(address.get("country") or "")
    except Invalid as exc:
        errors.extend(exc.errors)
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    return out


def _raise(errors: list[FieldError]) -> None:
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors)


async def create(
    session: AsyncSession,
    org_id: uuid.UUID,
    fields: dict[str, Any],
    contact_points: list[ContactPointInput],
) -> tuple[Borrower, list[ContactPoint]]:
    """Validate everything first, then write borrower and contact points in one commit."""
    clean, errors = _clean_fields(
        {
            "external_ref": None,
            "timezone": None,
            "preferred_language": None,
            "address": None,
            "do_not_contact": False,
            **fields,
        }
    )
    for key in ("first_name", "last_name"):
        if key not in fields:
            errors.append(FieldError(_CAMEL[key], "is required", "required"))
    region = (clean.get("address") or {}).get("country")
    points: list[ContactPointInput] = []
    seen: dict[tuple[str, str], int] = {}
    primaries: set[str] = set()
    for i, cp in enumerate(contact_points):
        prefix = f"contactPoints.{i}."
        try:
            point = contacts.validate_input(cp, region, prefix)
        except Invalid as exc:
            errors.extend(exc.errors)
            continue
        if (point.kind, point.value) in seen:
            errors.append(
                FieldError(
                    f"{prefix}value",
                    f"duplicates contactPoints.{seen[point.kind, point.value]}",
                    "duplicate",
                )
            )
        if point.is_primary and point.kind in primaries:
            errors.append(
                FieldError(
                    f"{prefix}isPrimary", f"only one {point.kind} contact point can be primary"
                )
            )
        seen[point.kind, point.value] = i
        primaries.update([point.kind] if point.is_primary else [])
        points.append(point)
    _raise(errors)
    # Ids are always generated: a caller-chosen id could probe other tenants' ids.
    borrower = Borrower(id=uuid.uuid4(), organization_id=org_id, **clean)
    session.add(borrower)
    try:
        await session.flush()
        rows = await contacts.insert_contact_points(session, borrower, points)
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(
            "the borrower could not be stored: it conflicts with existing data "
            "(was the same borrowerId sent twice?)"
        ) from None
    return borrower, rows


async def get(session: AsyncSession, org_id: uuid.UUID, borrower_id: uuid.UUID) -> Borrower:
    borrower = await session.scalar(
        select(Borrower).where(Borrower.id == borrower_id, Borrower.organization_id == org_id)
    )
    if borrower is None:
        raise NotFound(f"borrower {borrower_id} not found")
    return borrower


def _contact_values(q: str) -> set[str]:
    """Forms `q` may take as a stored contact value (an address, or a number as E.164)."""
    values = {q.lower()}
    if any(c.isdigit() for c in q):
        with contextlib.suppress(Invalid):
            values.add(contacts.normalize_phone(q, strict=False))
    return values


async def search(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
    q: str | None = None,
    external_ref: str | None = None,
) -> tuple[list[Borrower], bool]:
    """Newest first, keyset-paginated; returns (page, whether more follow)."""
    for field, text in (("q", q), ("externalRef", external_ref)):
        if text and "\x00" in text:
            raise Invalid.field(field, _NUL)
    query = select(Borrower).where(Borrower.organization_id == org_id)
    if q and q.strip():
        q = q.strip()
        full_name = Borrower.first_name + " " + Borrower.last_name
        query = query.where(
            or_(
                Borrower.first_name.istartswith(q, autoescape=True),
                Borrower.last_name.istartswith(q, autoescape=True),
                full_name.istartswith(q, autoescape=True),
                exists().where(
                    ContactPoint.borrower_id == Borrower.id,
                    ContactPoint.organization_id == org_id,
                    func.lower(ContactPoint.value).in_(_contact_values(q)),
                ),
            )
        )
    if external_ref is not None:
        query = query.where(Borrower.external_ref == external_ref)
    if after is not None:
        query = query.where(tuple_(Borrower.created_at, Borrower.id) < tuple_(*after))
    query = query.order_by(Borrower.created_at.desc(), Borrower.id.desc()).limit(limit + 1)
    rows = list(await session.scalars(query))
    return rows[:limit], len(rows) > limit


async def change(
    session: AsyncSession, org_id: uuid.UUID, borrower_id: uuid.UUID, changes: dict[str, Any]
) -> Borrower:
    clean, errors = _clean_fields(changes)
    _raise(errors)
    borrower = await get(session, org_id, borrower_id)
    for key, value in clean.items():
        setattr(borrower, key, value)
    await session.commit()
    await session.refresh(borrower)  # updated_at is set by the database
    return borrower


async def delete(session: AsyncSession, org_id: uuid.UUID, borrower_id: uuid.UUID) -> None:
    """Only a borrower nothing refers to: the communication record is append-only."""
    borrower = await get(session, org_id, borrower_id)
    own_points = select(ContactPoint.id).where(ContactPoint.borrower_id == borrower.id)
    for referenced in (
        exists().where(Message.borrower_id == borrower.id),
        exists().where(Message.contact_point_id.in_(own_points)),
        exists().where(Thread.borrower_id == borrower.id),
        exists().where(Call.borrower_id == borrower.id),
        exists().where(ConsentEvent.borrower_id == borrower.id),
    ):
        if await session.scalar(select(referenced)):
            raise Conflict(
                "messages, calls or consent records refer to this borrower; the "
                "communication record keeps them (set doNotContact instead)"
            )
    if await session.scalar(select(exists().where(CaseBorrower.borrower_id == borrower.id))):
        raise Conflict("the borrower is linked to cases, whose record needs it")
    for cp in await session.scalars(
        select(ContactPoint).where(ContactPoint.borrower_id == borrower.id)
    ):
        await session.delete(cp)
    await session.flush()
    await session.delete(borrower)
    await session.commit()
