"""Facts for the compliance gate, read from the database for a batch of contact attempts.

One query gathers, per attempt: the borrower's location signals and do-not-contact flag,
the contact point's label and source, the case status, the case's preferences in force,
and the latest consent-ledger entry for that contact point and channel. Only channels
under a frequency cap load the attempt history, and only then, when ``lock`` is set,
take a transaction-level advisory lock per (borrower, case) first: a cap check is
read-then-write, so two workers or agents must not both read "6 of 7" and both go
(reference/compliance.md, "What enforced means"). The caller then records the attempt
(claims the message, inserts the call) in the same transaction, before the lock ends.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from sqlalchemy.ext.asyncio import AsyncSession

from parley.compliance import caps, hours, zones
from parley.compliance.assess import (
    AttemptContext,
    ConsentFact,
    ContactPointFact,
    Location,
    Preferences,
)
from parley.compliance.gate import Decision
from parley.compliance.policy import DEFAULT_POLICY, CompliancePolicy, parse_policy
from parley.domain.channels import Channel
from parley.services.auth import Principal

if TYPE_CHECKING:
    from parley.bootstrap import Container

__all__ = ["AttemptRequest", "Contactability", "check", "load_contexts", "load_policy"]

# Direct prior consent makes a call excluded from the Reg F count for 7 days (1006.14(b)(3)).
DIRECT_CONSENT_VALID = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class AttemptRequest:
    organization_id: str
    case_id: str
    borrower_id: str
    contact_point_id: str
    channel: Channel
    purpose: str = "collection"
    immediate: bool = False
    message_id: str | None = None


FACTS_SQL = """
SELECT r.idx, b.timezone, b.address->>'country', b.address->>'region',
       coalesce(b.do_not_contact, false), c.status, o.default_timezone,
       cp.kind, cp.value, cp.label, cp.source,
       ph.value, ph.phone_tz::text,
       pref.version, pref.document,
       ce.id, ce.action, ce.source, ce.effective_at, ce.contact_point_id IS NOT NULL,
       ce.evidence->>'confirmationMessageId',
       (cp.kind = 'email' AND EXISTS (
          SELECT 1 FROM messages im WHERE im.contact_point_id = cp.id
            AND im.direction = 'inbound' AND im.case_id = c.id))
-- The requests as one JSON array (orjson writes it in C; seven lists would be adapted by
-- psycopg element by element, in Python, for every batch the dispatcher claims).
FROM jsonb_to_recordset(%(requests)s::jsonb)
     AS r(idx int, case_id uuid, borrower_id uuid, cp_id uuid, channel text, purpose text,
          org_id uuid)
-- Each lookup by primary key alone, one row at a time (LIMIT 1 keeps the planner from
-- flattening them), the owner checked outside it: with estimates off (fresh tables
-- without statistics, the unnest) the planner otherwise picks the organization's (or the
-- borrower's) index and filters every case of the organization per row -- measured at
-- ~40 us of backend CPU per message with 500 cases, ~3x the rest of the query.
CROSS JOIN LATERAL (SELECT id, status, organization_id FROM cases
                    WHERE id = r.case_id LIMIT 1) c
CROSS JOIN LATERAL (SELECT id, timezone, address, do_not_contact, organization_id
                    FROM borrowers WHERE id = r.borrower_id LIMIT 1) b
CROSS JOIN LATERAL (SELECT id, kind, value, label, source, borrower_id FROM contact_points
                    WHERE id = r.cp_id LIMIT 1) cp
CROSS JOIN LATERAL (SELECT default_timezone FROM organizations
                    WHERE id = r.org_id LIMIT 1) o
LEFT JOIN LATERAL (
  SELECT p.value, p.phone_tz FROM contact_points p
  WHERE p.borrower_id = b.id AND p.kind = 'phone'
  ORDER BY (p.id = cp.id) DESC, p.is_primary DESC, p.created_at LIMIT 1) ph ON true
LEFT JOIN LATERAL (
  SELECT version, document FROM communication_preferences
  WHERE case_id = c.id ORDER BY version DESC LIMIT 1) pref ON true
LEFT JOIN LATERAL (
  SELECT id, action, source, effective_at, contact_point_id, evidence FROM consent_events
  WHERE borrower_id = b.id AND channel = r.channel
    AND (contact_point_id = cp.id OR contact_point_id IS NULL)
    AND purpose IN ('all', r.purpose) AND action IN ('revoke', 'grant')
    AND effective_at <= %(now)s
  ORDER BY effective_at DESC, id DESC LIMIT 1) ce ON true
WHERE c.organization_id = r.org_id AND b.organization_id = r.org_id
  AND cp.borrower_id = b.id
"""

HISTORY_SQL = """
SELECT m.borrower_id::text, m.case_id::text, m.channel, m.attempted_at,
       m.contact_point_id::text, p.label, NULL::text, false
FROM messages m LEFT JOIN contact_points p ON p.id = m.contact_point_id
WHERE (m.borrower_id, m.case_id) IN (SELECT * FROM unnest(%(b)s::uuid[], %(c)s::uuid[]))
  AND m.direction = 'outbound' AND m.attempted_at > %(since)s
  AND m.id <> ALL(%(exclude)s::uuid[])
UNION ALL
-- A conversation's 7-day period runs from when it happened (the call's end), an attempt
-- counts from when it was placed. A call's result is its latest interaction log's when
-- it has one (the agent's disposition refines what the provider reported).
SELECT k.borrower_id::text, k.case_id::text, 'voice',
       CASE WHEN coalesce(lg.result, k.result) = 'conversation'
            THEN coalesce(k.ended_at, k.placed_at) ELSE k.placed_at END,
       k.contact_point_id::text, p.label, coalesce(lg.result, k.result, 'pending'),
       k.prior_consent
FROM calls k LEFT JOIN contact_points p ON p.id = k.contact_point_id
LEFT JOIN LATERAL (SELECT l.result FROM call_logs l WHERE l.call_id = k.id
                   ORDER BY l.id DESC LIMIT 1) lg ON true
WHERE (k.borrower_id, k.case_id) IN (SELECT * FROM unnest(%(b)s::uuid[], %(c)s::uuid[]))
  AND k.placed_at > %(since)s
UNION ALL
-- Calls the person placed are not our attempts, but a conversation on one starts the
-- 7-day period all the same, from when it ended: an agent answered it and its latest
-- interaction log says so (a voicemail the agent logs as "callback requested" is not one).
SELECT k.borrower_id::text, k.case_id::text, 'voice', coalesce(k.ended_at, k.created_at),
       k.contact_point_id::text, p.label, 'inbound_conversation', false
FROM calls k LEFT JOIN contact_points p ON p.id = k.contact_point_id
JOIN LATERAL (SELECT l.result FROM call_logs l WHERE l.call_id = k.id
              ORDER BY l.id DESC LIMIT 1) lg ON lg.result = 'conversation'
WHERE (k.borrower_id, k.case_id) IN (SELECT * FROM unnest(%(b)s::uuid[], %(c)s::uuid[]))
  AND k.direction = 'inbound' AND coalesce(k.ended_at, k.created_at) > %(since)s
  AND EXISTS (SELECT 1 FROM call_legs g WHERE g.call_id = k.id AND g.role = 'agent'
              AND g.answered_at IS NOT NULL)
"""

DIRECT_CONSENT_SQL = """
SELECT borrower_id::text, max(effective_at) FROM consent_events
WHERE borrower_id = ANY(%(b)s::uuid[]) AND action = 'direct_consent' AND channel = 'voice'
  AND effective_at > %(since)s AND effective_at <= %(now)s
GROUP BY borrower_id
"""

_policies: dict[tuple[str, int], CompliancePolicy] = {}


async def load_policy(conn: psycopg.AsyncConnection, organization_id: str) -> CompliancePolicy:
    return (await _policies_for(conn, [organization_id]))[organization_id]


async def _policies_for(
    conn: psycopg.AsyncConnection, org_ids: Sequence[str]
) -> dict[str, CompliancePolicy]:
    cur = await conn.execute(
        "SELECT organization_id::text, version, settings FROM compliance_policies "
        "WHERE organization_id = ANY(%s::uuid[])",
        (list(set(org_ids)),),
    )
    # Absent a row: the defaults (one shared instance: building a policy validates its
    # notice and disclosure texts, which is not free).
    out = dict.fromkeys(set(org_ids), DEFAULT_POLICY)
    for org, version, settings in await cur.fetchall():
        key = (org, version)
        if key not in _policies:
            try:
                _policies[key] = parse_policy(settings)
            except ValueError:  # PolicyError included. Validated on write; a bad row
                # (written by an older version) must neither open the gate nor break it.
                _policies[key] = DEFAULT_POLICY
            if len(_policies) > 1000:
                _policies.pop(next(iter(_policies)))
        out[org] = _policies[key]
    return out


def lock_key(borrower_id: str, case_id: str) -> int:
    """A stable signed 64-bit advisory-lock key per (person, debt)."""
    digest = hashlib.blake2b(f"cap:{borrower_id}:{case_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def load_contexts(
    conn: psycopg.AsyncConnection,
    requests: Sequence[AttemptRequest],
    now: datetime,
    *,
    lock: bool,
    exclude_message_ids: Sequence[str] = (),
) -> list[AttemptContext]:
    """An :class:`AttemptContext` per request, in order.

    Raises LookupError for a request whose case, borrower or contact point is not the
    organization's (callers validate that before; this is a second line).
    """
    if not requests:
        return []
    policies = await _policies_for(conn, [r.organization_id for r in requests])
    cur = await conn.execute(
        FACTS_SQL,
        {
            "requests": orjson.dumps(
                [
                    {
                        "idx": i,
                        "case_id": r.case_id,
                        "borrower_id": r.borrower_id,
                        "cp_id": r.contact_point_id,
                        "channel": r.channel.value,
                        "purpose": r.purpose,
                        "org_id": r.organization_id,
                    }
                    for i, r in enumerate(requests)
                ]
            ).decode(),
            "now": now,
        },
    )
    rows = {row[0]: row for row in await cur.fetchall()}
    if len(rows) != len(requests):
        raise LookupError("an attempt's case, borrower or contact point was not found")

    contexts: list[AttemptContext] = []
    capped: list[int] = []
    # Attempts with equal facts get one context (a batch of a campaign names a few
    # distinct sets of facts for hundreds of borrowers): built, and checked for caps,
    # once. The key is every fact the context is built from; a preferences document
    # (a dict) keeps its attempt out of the memo.
    built: dict[tuple[Any, ...], tuple[AttemptContext, bool]] = {}
    for i, req in enumerate(requests):
        row = rows[i]
        signal = _phone_signal(row[12]) if row[12] else None
        confirmation = bool(req.message_id and row[20] == req.message_id)
        key = None
        if row[14] is None:
            key = (
                req.organization_id,
                req.channel,
                req.purpose,
                req.immediate,
                confirmation,
                row[1:8],
                row[9:11],
                row[11] if signal is None else None,
                row[12:14],
                row[15:20],
                row[21],
            )
            found = built.get(key)
            if found is not None:
                contexts.append(found[0])
                if found[1]:
                    capped.append(i)
                continue
        (
            _,
            tz,
            country,
            region,
            dnc,
            case_status,
            org_zone,
            cp_kind,
            _cp_value,
            cp_label,
            cp_source,
            phone,
            _phone_tz,
            pref_version,
            pref_doc,
            ce_id,
            ce_action,
            ce_source,
            ce_at,
            ce_cp_scoped,
            _ce_confirmation,
            email_used,
        ) = row
        policy = policies[req.organization_id]
        location = Location(
            stated_zone=tz,
            country=country,
            region=region,
            default_zone=org_zone,
            # With the stored signal the number itself is not needed (and leaving it out
            # lets borrowers with equal facts share one decision in a batch).
            phone_e164=None if signal is not None else phone,
            phone_signal=signal,
        )
        consent = ConsentFact(
            state={"revoke": "revoked", "grant": "granted"}.get(ce_action or "", "none"),
            event_id=ce_id,
            source=ce_source,
            effective_at=ce_at,
            scope=None if ce_id is None else ("contact_point" if ce_cp_scoped else "borrower"),
            is_confirmation_of_revocation=confirmation,
        )
        ctx = AttemptContext(
            channel=req.channel,
            now=now,
            case_status=case_status,
            contact_point=ContactPointFact(
                kind=cp_kind,
                label=cp_label,
                source=cp_source,
                used_by_consumer_for_debt=bool(email_used),
            ),
            policy=policy,
            purpose=req.purpose,
            immediate=req.immediate,
            borrower_do_not_contact=bool(dnc),
            location=location,
            preferences=preferences_from(pref_version, pref_doc),
            consent=consent,
        )
        contexts.append(ctx)
        is_capped_now = is_capped(policy.frequency_for(location.jurisdiction), req.channel)
        if is_capped_now:
            capped.append(i)
        if key is not None:
            built[key] = (ctx, is_capped_now)
    if capped:
        await _attach_history(conn, requests, contexts, capped, now, lock, exclude_message_ids)
    return contexts


# Stored phone signals by their JSON text: a batch names the same few hundred numbers
# again and again, and parsing each one's record was a visible share of a claim.
_signals: dict[str, zones.PhoneSignal | None] = {}


def _phone_signal(record: str) -> zones.PhoneSignal | None:
    signal = _signals.get(record, _MISSING)
    if signal is _MISSING:
        try:
            signal = zones.PhoneSignal.from_record(orjson.loads(record))
        except orjson.JSONDecodeError:
            signal = None
        if len(_signals) >= 10_000:
            _signals.clear()
        _signals[record] = signal
    return signal  # type: ignore[return-value]


_MISSING: Any = object()


def _number_kind(label: str | None) -> caps.NumberKind:
    return "other" if (label or "").lower() == "work" else "personal"


def is_capped(frequency: caps.FrequencyPolicy, channel: Channel) -> bool:
    post = frequency.post_conversation
    return any(channel in rule.channels for rule in frequency.caps) or (
        post is not None and channel in post.channels
    )


async def _attach_history(
    conn: psycopg.AsyncConnection,
    requests: Sequence[AttemptRequest],
    contexts: list[AttemptContext],
    capped: list[int],
    now: datetime,
    lock: bool,
    exclude_message_ids: Sequence[str],
) -> None:
    pairs = sorted({(requests[i].borrower_id, requests[i].case_id) for i in capped})
    if lock:
        # Sorted keys: two transactions locking overlapping sets never deadlock.
        keys = sorted({lock_key(b, c) for b, c in pairs})
        await conn.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k",
            (keys,),
        )
    lookback = max(
        (
            max(
                (r.window for r in ctx.policy.frequency_for(ctx.location.jurisdiction).caps),
                default=timedelta(0),
            )
            for ctx in (contexts[i] for i in capped)
        ),
        default=timedelta(0),
    ) + timedelta(days=62)  # post-conversation days (<= 60) plus a day each side for zones
    params = {
        "b": [b for b, _ in pairs],
        "c": [c for _, c in pairs],
        "since": now - lookback,
        "exclude": list(exclude_message_ids),
        "now": now,
    }
    cur = await conn.execute(HISTORY_SQL, params)
    history: dict[tuple[str, str], list[caps.PastAttempt]] = defaultdict(list)
    for borrower_id, case_id, channel, at, cp_id, label, result, prior in await cur.fetchall():
        history[(borrower_id, case_id)].append(
            caps.PastAttempt(
                at=at,
                channel=Channel(channel),
                contact_point_id=cp_id,
                number_kind=_number_kind(label),
                result=caps.AttemptResult(result) if result else caps.AttemptResult.SENT,
                prior_consent=bool(prior),
            )
        )
    cur = await conn.execute(DIRECT_CONSENT_SQL, {**params, "since": now - DIRECT_CONSENT_VALID})
    consented = {row[0] for row in await cur.fetchall()}
    for i in capped:
        req = requests[i]
        past = sorted(history.get((req.borrower_id, req.case_id), []), key=lambda a: a.at)
        contexts[i] = _with_history(
            contexts[i], tuple(past), req.borrower_id in consented, req.contact_point_id
        )


def _with_history(
    ctx: AttemptContext,
    past: tuple[caps.PastAttempt, ...],
    prior_consent: bool,
    contact_point_id: str,
) -> AttemptContext:
    # The contact point id only matters to per-number caps; leaving it out of uncapped
    # contexts lets equal contexts share one decision.
    return replace(
        ctx, history=past, prior_consent=prior_consent, contact_point_id=contact_point_id
    )


def attempt_now(ctx: AttemptContext, contact_point_id: str, at: datetime) -> caps.PastAttempt:
    """The attempt about to be recorded, as the next decision in the same batch sees it."""
    return caps.PastAttempt(
        at=at,
        channel=ctx.channel,
        contact_point_id=contact_point_id,
        number_kind=ctx.contact_point.number_kind,
        result=caps.AttemptResult.PENDING,
        prior_consent=ctx.prior_consent,
    )


_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def preferences_from(version: int | None, doc: dict[str, Any] | None) -> Preferences:
    """The rules' view of a stored preferences document (see services.preferences)."""
    if not doc:
        return Preferences(version=version)
    disallowed = {
        channel
        for key, channel in (
            ("allowSms", Channel.SMS),
            ("allowEmail", Channel.EMAIL),
            ("allowWhatsapp", Channel.WHATSAPP),
            ("allowCalls", Channel.VOICE),
        )
        if doc.get(key) is False
    }
    window = None
    zone = None
    ch = doc.get("contactHours")
    if isinstance(ch, dict) and ch.get("start") and ch.get("end"):
        window = (time.fromisoformat(ch["start"]), time.fromisoformat(ch["end"]))
        zone = ch.get("timezone")
    inconvenient = []
    for item in doc.get("inconvenientTimes") or []:
        days = frozenset(_DAYS[d] for d in item.get("days") or _DAYS)
        inconvenient.append(
            hours.InconvenientPeriod.between(
                time.fromisoformat(item["start"]),
                time.fromisoformat(item["end"]),
                days,
                item.get("label") or "",
            )
        )
    return Preferences(
        version=version,
        disallowed_channels=frozenset(disallowed),
        do_not_contact=bool(doc.get("doNotContact")),
        dnc_exceptions=frozenset(doc.get("exceptions") or ()),
        contact_hours=window,
        contact_hours_zone=zone,
        inconvenient=tuple(inconvenient),
    )


@dataclass(frozen=True, slots=True)
class Contactability:
    case_id: str
    borrower_id: str
    contact_point_id: str
    to: str
    channel: Channel
    decision: Decision


async def check(
    container: Container,
    session: AsyncSession,
    principal: Principal,
    case_id: uuid.UUID,
    channel: Channel,
    *,
    borrower_id: uuid.UUID | None = None,
    to: str | None = None,
    purpose: str = "collection",
) -> Contactability:
    """May this borrower be contacted now on this channel — and if not, when and why?

    The same facts and rules as a real attempt; nothing is written and no lock is taken
    (the answer can change before an attempt is made; the attempt is decided again).
    """
    from parley.compliance.assess import PURPOSES, REPLY_PURPOSES, assess
    from parley.services import context as case_context
    from parley.services import recipients
    from parley.services.errors import Invalid
    from parley.storage.db import raw_connection

    if purpose not in PURPOSES - REPLY_PURPOSES:
        raise Invalid.field(
            "purpose", "must be one of " + ", ".join(sorted(PURPOSES - REPLY_PURPOSES))
        )
    org_id = principal.organization_id
    ctx = await case_context.load(session, org_id, case_id, borrower_id)
    borrowers = [ctx.borrower] if borrower_id is not None else ctx.borrowers
    borrower, contact = await recipients.resolve(session, org_id, borrowers, channel, to)
    conn = await raw_connection(session)
    (attempt,) = await load_contexts(
        conn,
        [
            AttemptRequest(
                organization_id=str(org_id),
                case_id=str(ctx.case.id),
                borrower_id=str(borrower.id),
                contact_point_id=str(contact.id),
                channel=channel,
                purpose=purpose,
                immediate=channel is Channel.VOICE,
            )
        ],
        container.clock(),
        lock=False,
    )
    # Read the ORM objects before the rollback: it expires them, and a lazy load after
    # it would need I/O outside the async context (a 500 instead of the answer).
    result = Contactability(
        case_id=str(ctx.case.id),
        borrower_id=str(borrower.id),
        contact_point_id=str(contact.id),
        to=contact.value,
        channel=channel,
        decision=assess(attempt),
    )
    await session.rollback()
    return result
