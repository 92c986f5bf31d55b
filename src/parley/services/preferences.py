"""A case's communication preferences (the seed's PUT .../communication-preferences).

PUT merges: fields present in the request replace the stored value, an explicit null
clears it, absent fields keep theirs, so the seed's two documents (preferences, then the
opt-out shape) can be sent one after the other. Every change is stored as a new version
(append-only); the latest version is in force and is what the gate reads.

What the gate does with them:
- ``allowSms`` / ``allowEmail`` / ``allowWhatsapp`` / ``allowCalls`` false: that medium
  is not used (Reg F 1006.14(h)).
- ``doNotContact`` true: nothing is sent except the listed ``exceptions``
  (``legal_notices``, ``payment_confirmations``).
- ``contactHours`` {start, end, timezone}: the borrower's convenient hours, narrowing the
  policy window (Reg F 1006.6(b)(1): the consumer may name inconvenient times); its
  timezone is the borrower's stated location.
- ``inconvenientTimes``: further stated periods, e.g. at work 09:00-17:00 on weekdays.
- ``emailAddress`` / ``phoneNumber``: the addresses to use; they must be contact points
  of a borrower on the case, and are the default recipient for their channel (a message
  without ``to``; a phone number serves SMS and WhatsApp).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.compliance.zones import is_valid_zone
from parley.domain.channels import Channel
from parley.services import context as case_context
from parley.services import recipients
from parley.services.auth import Principal
from parley.services.errors import FieldError, Invalid
from parley.storage.models import Case, CommunicationPreferences

FIELDS = (
    "preferredChannel",
    "emailAddress",
    "phoneNumber",
    "allowSms",
    "allowEmail",
    "allowWhatsapp",
    "allowCalls",
    "preferredLanguage",
    "doNotContact",
    "reason",
    "effectiveDate",
    "exceptions",
    "contactHours",
    "inconvenientTimes",
)
EXCEPTIONS = frozenset({"legal_notices", "payment_confirmations"})
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


async def current(
    session: AsyncSession, org_id: uuid.UUID, case_id: uuid.UUID
) -> CommunicationPreferences | None:
    return await session.scalar(
        select(CommunicationPreferences)
        .where(
            CommunicationPreferences.case_id == case_id,
            CommunicationPreferences.organization_id == org_id,
        )
        .order_by(CommunicationPreferences.version.desc())
        .limit(1)
    )


def _time(value: Any, where: str, errors: list[FieldError]) -> str | None:
    try:
        if not isinstance(value, str) or len(value) not in (5, 8):
            raise ValueError
        return time.fromisoformat(value).isoformat(timespec="minutes")
    except ValueError:
        errors.append(FieldError(where, "must be a time like '09:00'"))
        return None


def _contact_hours(value: Any, errors: list[FieldError]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(FieldError("contactHours", "must be {start, end, timezone}"))
        return None
    for key in sorted(set(value) - {"start", "end", "timezone"}):
        errors.append(FieldError(f"contactHours.{key}", "unknown field"))
    start = _time(value.get("start"), "contactHours.start", errors)
    end = _time(value.get("end"), "contactHours.end", errors)
    if start and end and start == end:
        errors.append(FieldError("contactHours.end", "must differ from start"))
    zone = value.get("timezone")
    if zone is not None and (not isinstance(zone, str) or not is_valid_zone(zone)):
        errors.append(
            FieldError("contactHours.timezone", "must be an IANA time zone like Europe/Copenhagen")
        )
    return {"start": start, "end": end, "timezone": zone}


def _inconvenient(value: Any, errors: list[FieldError]) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 20:
        errors.append(FieldError("inconvenientTimes", "must be a list of at most 20 periods"))
        return None
    out = []
    for i, item in enumerate(value):
        where = f"inconvenientTimes.{i}"
        if not isinstance(item, dict):
            errors.append(FieldError(where, "must be {start, end, days?, label?}"))
            continue
        for key in sorted(set(item) - {"start", "end", "days", "label"}):
            errors.append(FieldError(f"{where}.{key}", "unknown field"))
        start = _time(item.get("start"), f"{where}.start", errors)
        end = _time(item.get("end"), f"{where}.end", errors)
        days = item.get("days") or list(DAYS)
        if not isinstance(days, list) or any(d not in DAYS for d in days):
            errors.append(FieldError(f"{where}.days", "must list days among " + ", ".join(DAYS)))
            days = list(DAYS)
        label = item.get("label")
        if label is not None and (not isinstance(label, str) or len(label) > 100):
            errors.append(FieldError(f"{where}.label", "must be a text of at most 100 characters"))
        out.append({"start": start, "end": end, "days": days, "label": label})
    return out


def validate(changes: dict[str, Any], merged: dict[str, Any]) -> dict[str, Any]:
    """The merged document, checked field by field (every problem reported at once)."""
    errors: list[FieldError] = []
    doc = dict(merged)
    for key, value in changes.items():
        if key not in FIELDS:
            errors.append(FieldError(key, "unknown field"))
            continue
        doc[key] = value
    for key in ("allowSms", "allowEmail", "allowWhatsapp", "allowCalls", "doNotContact"):
        if doc.get(key) is not None and not isinstance(doc[key], bool):
            errors.append(FieldError(key, "must be true or false"))
    pc = doc.get("preferredChannel")
    if pc is not None and pc not in {c.value for c in Channel}:
        errors.append(FieldError("preferredChannel", "must be email, sms, whatsapp or voice"))
    lang = doc.get("preferredLanguage")
    if lang is not None and (not isinstance(lang, str) or not 2 <= len(lang) <= 20):
        errors.append(FieldError("preferredLanguage", "must be a language tag like 'da'"))
    reason = doc.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
        errors.append(FieldError("reason", "must be a text of at most 1000 characters"))
    eff = doc.get("effectiveDate")
    if eff is not None:
        try:
            date.fromisoformat(eff)
        except (TypeError, ValueError):
            errors.append(FieldError("effectiveDate", "must be a date like 2024-01-15"))
    exc = doc.get("exceptions")
    if exc is not None and (not isinstance(exc, list) or any(e not in EXCEPTIONS for e in exc)):
        errors.append(
            FieldError("exceptions", "must list values among " + ", ".join(sorted(EXCEPTIONS)))
        )
    if "contactHours" in doc:
        doc["contactHours"] = _contact_hours(doc["contactHours"], errors)
    if "inconvenientTimes" in doc:
        doc["inconvenientTimes"] = _inconvenient(doc["inconvenientTimes"], errors)
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    return {k: v for k, v in doc.items() if v is not None}


async def update(
    session: AsyncSession,
    principal: Principal,
    case_id: uuid.UUID,
    changes: dict[str, Any],
    now: datetime,
) -> CommunicationPreferences:
    org_id = principal.organization_id
    ctx = await case_context.load(session, org_id, case_id, None)
    # Versions are numbered per case: concurrent changes take turns (not a unique-key 500).
    await session.execute(select(Case.id).where(Case.id == ctx.case.id).with_for_update())
    existing = await current(session, org_id, ctx.case.id)
    doc = validate(changes, dict(existing.document) if existing else {})
    for key, channel in (("emailAddress", Channel.EMAIL), ("phoneNumber", Channel.SMS)):
        if changes.get(key) is not None:
            try:
                _, cp = await recipients.resolve(
                    session, org_id, ctx.borrowers, channel, str(changes[key])
                )
            except Invalid as exc:
                message = exc.errors[0].message if exc.errors else exc.detail
                raise Invalid.field(key, message, "unknown_recipient") from None
            doc[key] = cp.value
    record = CommunicationPreferences(
        organization_id=org_id,
        case_id=ctx.case.id,
        version=(existing.version + 1) if existing else 1,
        document=doc,
        changed_by_user_id=principal.user_id,
        changed_by_name=principal.name,
        changed_at=now,
    )
    session.add(record)
    await session.flush()
    if doc.get("doNotContact") and not (existing and existing.document.get("doNotContact")):
        await _cancel_waiting(session, org_id, ctx.case.id, doc, now)
    await session.commit()
    return record


async def _cancel_waiting(
    session: AsyncSession,
    org_id: uuid.UUID,
    case_id: uuid.UUID,
    doc: dict[str, Any],
    now: datetime,
) -> None:
    """A do-not-contact request cancels what is waiting on the case (exceptions stay)."""
    from parley.compliance.assess import EXCEPTION_PURPOSES, REPLY_PURPOSES
    from parley.storage.db import raw_connection

    keep = sorted(REPLY_PURPOSES) + [EXCEPTION_PURPOSES[e] for e in doc.get("exceptions") or []]
    conn = await raw_connection(session)
    await conn.execute(
        """
        WITH waiting AS (
          SELECT id, status FROM messages WHERE organization_id = %(org)s AND case_id = %(case)s
            AND direction = 'outbound' AND status IN ('queued', 'scheduled')
            AND purpose <> ALL(%(keep)s) FOR UPDATE),
        done AS (
          UPDATE messages m SET status = 'cancelled', status_changed_at = %(now)s
          FROM waiting w WHERE m.id = w.id RETURNING m.id, w.status)
        INSERT INTO message_events (organization_id, message_id, event_type, status_before,
          status_after, source, reason, occurred_at)
        SELECT %(org)s, id, 'cancelled', status, 'cancelled', 'parley',
               'do not contact requested', %(now)s FROM done
        """,
        {"org": org_id, "case": case_id, "keep": keep, "now": now},
    )
