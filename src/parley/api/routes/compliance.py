"""The compliance gate's API: contactability, preferences, the consent ledger, the policy.

- ``GET /api/cases/{caseId}/contactability?channel=sms`` — may I contact this borrower
  now on this channel, and if not, when next and why (nothing is sent or written).
- ``GET|PUT /api/cases/{caseId}/communication-preferences`` — the seed's shapes.
- ``GET|POST /api/borrowers/{borrowerId}/consents`` — the consent ledger.
- ``GET|PUT /api/compliance/policy`` — the organization's rule configuration (admin).
"""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from parley.api.deps import AdminDep, ContainerDep, PrincipalDep, SessionDep, SupervisorDep
from parley.api.schemas.compliance import (
    ConsentIn,
    ConsentList,
    ConsentOut,
    ContactabilityOut,
    PolicyOut,
    PreferencesIn,
    PreferencesOut,
)
from parley.compliance.policy import PolicyError, parse_policy
from parley.domain.channels import Channel, ContactKind
from parley.services import borrowers as borrower_svc
from parley.services import consent as consent_svc
from parley.services import contactability
from parley.services import preferences as pref_svc
from parley.services.errors import FieldError, Invalid
from parley.storage.db import raw_connection
from parley.storage.models import CompliancePolicy, ConsentEvent, ContactPoint

router = APIRouter(tags=["compliance"])

FUTURE_SKEW = timedelta(minutes=5)
PHONE_MEDIA = [Channel.SMS, Channel.WHATSAPP, Channel.VOICE]

CaseId = Annotated[uuid.UUID, Path(alias="caseId")]
BorrowerId = Annotated[uuid.UUID, Path(alias="borrowerId")]


@router.get("/api/cases/{caseId}/contactability", response_model=ContactabilityOut)
async def contactability_check(
    case_id: CaseId,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
    channel: Annotated[str, Query()],
    borrower_id: Annotated[uuid.UUID | None, Query(alias="borrowerId")] = None,
    to: Annotated[str | None, Query(max_length=320)] = None,
    purpose: Annotated[str, Query(max_length=30)] = "collection",
) -> ContactabilityOut:
    try:
        ch = Channel(channel)
    except ValueError:
        raise Invalid.field("channel", "must be email, sms, whatsapp or voice") from None
    result = await contactability.check(
        container, session, principal, case_id, ch, borrower_id=borrower_id, to=to, purpose=purpose
    )
    d = result.decision
    return ContactabilityOut(
        case_id=uuid.UUID(result.case_id),
        borrower_id=uuid.UUID(result.borrower_id),
        contact_point_id=uuid.UUID(result.contact_point_id),
        to=result.to,
        channel=ch.value,
        allowed=d.allowed,
        outcome=d.outcome.value,
        next_allowed_at=d.next_allowed_at,
        reasons=list(d.reasons),
        rules=d.rules_record(),
        facts=d.facts_record(),
        evaluated_at=d.facts.now.astimezone(UTC),
    )


def _prefs_out(case_id: uuid.UUID, record: Any) -> PreferencesOut:
    if record is None:
        return PreferencesOut(case_id=case_id, version=0, preferences={})
    return PreferencesOut(
        case_id=case_id,
        version=record.version,
        preferences=record.document,
        changed_by=record.changed_by_name,
        changed_at=record.changed_at,
    )


@router.get("/api/cases/{caseId}/communication-preferences", response_model=PreferencesOut)
async def get_preferences(
    case_id: CaseId, session: SessionDep, principal: PrincipalDep
) -> PreferencesOut:
    from parley.services.cases import get as get_case

    record = await get_case(session, principal.organization_id, case_id)
    prefs = await pref_svc.current(session, principal.organization_id, record.case.id)
    return _prefs_out(case_id, prefs)


@router.put("/api/cases/{caseId}/communication-preferences", response_model=PreferencesOut)
async def put_preferences(
    case_id: CaseId,
    body: PreferencesIn,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
) -> PreferencesOut:
    changes = body.model_dump(by_alias=True, exclude_unset=True, mode="json")
    record = await pref_svc.update(session, principal, case_id, changes, container.clock())
    return _prefs_out(case_id, record)


def _consent_out(e: ConsentEvent) -> ConsentOut:
    return ConsentOut(
        consent_id=e.id,
        borrower_id=e.borrower_id,
        contact_point_id=e.contact_point_id,
        address=e.address,
        channel=e.channel,
        purpose=e.purpose,
        action=e.action,
        source=e.source,
        source_message_id=e.source_message_id,
        reason=e.reason,
        evidence=e.evidence or {},
        effective_at=e.effective_at.astimezone(UTC),
        recorded_by=e.recorded_by_name,
        recorded_at=e.recorded_at.astimezone(UTC),
    )


@router.get("/api/borrowers/{borrowerId}/consents", response_model=ConsentList)
async def list_consents(
    borrower_id: BorrowerId, session: SessionDep, principal: PrincipalDep
) -> ConsentList:
    borrower = await borrower_svc.get(session, principal.organization_id, borrower_id)
    rows = await session.scalars(
        select(ConsentEvent)
        .where(
            ConsentEvent.borrower_id == borrower.id,
            ConsentEvent.organization_id == principal.organization_id,
        )
        .order_by(ConsentEvent.effective_at, ConsentEvent.id)
    )
    return ConsentList(consents=[_consent_out(e) for e in rows])


@router.post("/api/borrowers/{borrowerId}/consents", response_model=ConsentOut, status_code=201)
async def record_consent(
    borrower_id: BorrowerId,
    body: ConsentIn,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
) -> ConsentOut:
    """Record a grant, a revocation or a direct consent to be called, as the borrower
    told an agent. A revocation also cancels the messages waiting on those channels."""
    org_id = principal.organization_id
    borrower = await borrower_svc.get(session, org_id, borrower_id)
    channel = Channel(body.channel)
    if body.action == "direct_consent" and channel is not Channel.VOICE:
        raise Invalid.field("action", "direct_consent is consent to be called (channel voice)")
    if body.purpose != "all" and body.purpose not in (
        "collection",
        "legal_notice",
        "payment_confirmation",
    ):
        raise Invalid.field(
            "purpose", "must be all, collection, legal_notice or payment_confirmation"
        )
    cp = None
    if body.contact_point_id is not None:
        cp = await session.scalar(
            select(ContactPoint).where(
                ContactPoint.id == body.contact_point_id,
                ContactPoint.borrower_id == borrower.id,
                ContactPoint.organization_id == org_id,
            )
        )
        if cp is None:
            raise Invalid.field("contactPointId", "is not a contact point of this borrower")
        if not ContactKind(cp.kind).serves(channel):
            raise Invalid.field("contactPointId", f"a {cp.kind} cannot be used for {channel.value}")
    now = container.clock()
    effective = body.effective_at or now
    if effective.tzinfo is None:
        raise Invalid.field("effectiveAt", "must include a timezone")
    if effective > now + FUTURE_SKEW:
        # The ledger records what the borrower said, when they said it; a change dated in
        # the future would sit unseen by the gate while replies found it "already" done.
        raise Invalid.field("effectiveAt", "cannot be in the future")
    change = consent_svc.ConsentChange(
        organization_id=str(org_id),
        borrower_id=str(borrower.id),
        contact_point_id=str(cp.id) if cp else None,
        address=cp.value if cp else None,
        channel=channel,
        action=body.action,
        source="agent" if principal.user_id else "api",
        effective_at=effective,
        purpose=body.purpose,
        reason=body.reason,
        recorded_by_name=principal.name,
    )
    conn = await raw_connection(session)
    if body.action == "revoke":
        # TCPA: revoking calls revokes texts and vice versa unless the borrower limits it.
        scope = [channel] if body.limit_to_channel or channel not in PHONE_MEDIA else PHONE_MEDIA
        await consent_svc.lock_borrower(conn, str(borrower.id))
        ids, _ = await consent_svc.revoke(conn, change, scope)
        # revoke() records the channels in name order; answer with the one asked about.
        event_id = ids[sorted(c.value for c in scope).index(channel.value)]
    else:
        event_id = await consent_svc.record(conn, change)
    await session.commit()
    event = await session.get(ConsentEvent, event_id)
    assert event is not None
    return _consent_out(event)


async def _policy_out(row: CompliancePolicy | None) -> PolicyOut:
    settings = dict(row.settings) if row else {}
    return PolicyOut(
        settings=settings,
        version=row.version if row else 0,
        effective=parse_policy(settings).as_record(),
        updated_at=row.updated_at if row else None,
        updated_by=row.updated_by_name if row else None,
    )


@router.get("/api/compliance/policy", response_model=PolicyOut)
async def get_policy(session: SessionDep, principal: SupervisorDep) -> PolicyOut:
    return await _policy_out(await session.get(CompliancePolicy, principal.organization_id))


@router.put("/api/compliance/policy", response_model=PolicyOut)
async def put_policy(
    body: dict[str, Any], session: SessionDep, principal: AdminDep, container: ContainerDep
) -> PolicyOut:
    """Replace the organization's policy document (see docs/compliance.md for the shape)."""
    try:
        parse_policy(body)
    except PolicyError as exc:
        raise Invalid(str(exc), [FieldError(f, m) for f, m in exc.errors]) from None
    row = await session.get(CompliancePolicy, principal.organization_id, with_for_update=True)
    if row is None:
        row = CompliancePolicy(organization_id=principal.organization_id, settings=body, version=1)
        session.add(row)
    else:
        row.settings = body
        row.version += 1
    row.updated_by_name = principal.name
    row.updated_at = container.clock()
    await session.commit()
    return await _policy_out(row)
