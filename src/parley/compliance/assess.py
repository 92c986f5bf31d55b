"""One contact attempt, every rule: the gate's full evaluation with its evidence.

:class:`AttemptContext` holds every fact the rules need about one attempt (who, on which
channel and contact point, for what purpose, the borrower's location signals, the case's
preferences, the consent ledger's current entry, the attempt history for capped
channels, the organization's policy). :func:`assess` runs every rule and returns a
:class:`~parley.compliance.gate.Decision` whose ``evidence`` is what gets stored with the
message or call: each rule's verdict and the facts it used (local time in every
plausible zone, counts in each window, the consent record consulted).

Immediate attempts (a call being placed now) cannot wait: a rule that would defer them
blocks them instead, and the decision still says when the next allowed moment is.

Replies the borrower asked for (the one opt-out confirmation, a HELP answer) are not
collection communications: they skip contact hours, caps, disclosure and preferences;
the opt-out confirmation is the only message a revocation itself allows.

Pure: no I/O. The storage side (``parley.services.contactability``) builds contexts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Final
from zoneinfo import ZoneInfo

from parley.compliance import caps, content, gate, hours, zones
from parley.compliance.gate import AttemptFacts, Decision, Outcome, RuleVerdict
from parley.compliance.policy import CompliancePolicy
from parley.compliance.region_zones import _COUNTRY_ALIASES, _REGION_TABLES
from parley.domain.channels import Channel

__all__ = [
    "PURPOSES",
    "REPLY_PURPOSES",
    "AttemptContext",
    "ConsentFact",
    "ContactPointFact",
    "Location",
    "Preferences",
    "assess",
]

# Purposes of an outbound contact. Replies the borrower asked for are not collection.
PURPOSES: Final = frozenset(
    {
        "collection",
        "legal_notice",
        "payment_confirmation",
        "opt_out_confirmation",
        "opt_in_confirmation",
        "help_reply",
    }
)
REPLY_PURPOSES: Final = frozenset({"opt_out_confirmation", "opt_in_confirmation", "help_reply"})
# The seed's opt-out exceptions ("legal_notices") name purposes in the plural.
EXCEPTION_PURPOSES: Final = {
    "legal_notices": "legal_notice",
    "payment_confirmations": "payment_confirmation",
}


@dataclass(frozen=True, slots=True)
class Location:
    """The borrower's location signals (zones.plausible_zones reads all of them)."""

    stated_zone: str | None = None
    country: str | None = None
    region: str | None = None
    phone_e164: str | None = None
    default_zone: str | None = None
    # The phone's signal as stored with the contact point (None: parse phone_e164).
    phone_signal: zones.PhoneSignal | None = None

    @property
    def jurisdiction(self) -> str | None:
        """'US-MA' from an address in Massachusetts; 'US' with no region; None unknown."""
        if not self.country:
            return None
        country = self.country.strip().upper()
        if country in ("USA", "UNITED STATES"):
            country = "US"
        country = _COUNTRY_ALIASES.get(country, country)
        region = (self.region or "").strip().upper()
        # Addresses name the region as a code ("MA"), an ISO 3166-2 code ("US-MA") or in
        # full ("Massachusetts"); each must select the state's rules (its caps overlay).
        region = region.removeprefix(country + "-")
        if country in _REGION_TABLES:
            region = _REGION_TABLES[country][1].get(region, region)
        return f"{country}-{region}" if region and len(region) <= 3 else country


@dataclass(frozen=True, slots=True)
class ConsentFact:
    """The consent-ledger entry consulted for this contact point and channel (latest)."""

    state: str = "none"  # none | granted | revoked
    event_id: int | None = None
    source: str | None = None
    effective_at: datetime | None = None
    scope: str | None = None  # contact_point | borrower
    # The revocation's own confirmation message is the attempt being decided.
    is_confirmation_of_revocation: bool = False

    def as_record(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "eventId": self.event_id,
            "source": self.source,
            "effectiveAt": self.effective_at.isoformat() if self.effective_at else None,
            "scope": self.scope,
        }


@dataclass(frozen=True, slots=True)
class ContactPointFact:
    kind: str  # email | phone
    label: str | None = None  # mobile, home, work, personal
    source: str = "borrower_provided"
    used_by_consumer_for_debt: bool = False
    consumer_consented: bool = False

    @property
    def number_kind(self) -> caps.NumberKind:
        """MA distinguishes personal numbers (residence, cell) from others (work)."""
        return "other" if (self.label or "").lower() == "work" else "personal"

    def as_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "source": self.source,
            "usedByConsumerForDebt": self.used_by_consumer_for_debt,
            "consumerConsented": self.consumer_consented,
        }


@dataclass(frozen=True, slots=True)
class Preferences:
    """The case's communication preferences in force (latest version)."""

    version: int | None = None
    disallowed_channels: frozenset[Channel] = frozenset()
    do_not_contact: bool = False
    dnc_exceptions: frozenset[str] = frozenset()
    contact_hours: tuple[time, time] | None = None
    contact_hours_zone: str | None = None
    inconvenient: tuple[hours.InconvenientPeriod, ...] = ()

    def as_record(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "disallowedChannels": sorted(c.value for c in self.disallowed_channels),
            "doNotContact": self.do_not_contact,
            "exceptions": sorted(self.dnc_exceptions),
            "contactHours": [t.isoformat() for t in self.contact_hours]
            if self.contact_hours
            else None,
            "contactHoursZone": self.contact_hours_zone,
        }


@dataclass(frozen=True)
class AttemptContext:
    channel: Channel
    now: datetime
    case_status: str
    contact_point: ContactPointFact
    policy: CompliancePolicy
    purpose: str = "collection"
    immediate: bool = False
    borrower_do_not_contact: bool = False
    location: Location = field(default_factory=Location)
    preferences: Preferences = field(default_factory=Preferences)
    consent: ConsentFact = field(default_factory=ConsentFact)
    contact_point_id: str | None = None
    # Past attempts on this debt to this person (only loaded for capped channels).
    history: tuple[caps.PastAttempt, ...] = ()
    # The borrower gave direct consent to be called within the last 7 days: such a call
    # is outside the Reg F frequency presumption (1006.14(b)(3)); state caps still apply.
    prior_consent: bool = False


def us_rules_apply(jurisdiction: str | None) -> bool:
    """Reg F's own rules (employer email, the FDCPA disclosure) bind collectors of US
    consumers; a borrower whose address is elsewhere is outside them (contact hours,
    consent and opt-out still apply everywhere). Unknown location: assume US."""
    return jurisdiction is None or jurisdiction == "US" or jurisdiction.startswith("US-")


def _is_reply(ctx: AttemptContext) -> bool:
    return ctx.purpose in REPLY_PURPOSES


def _do_not_contact(ctx: AttemptContext) -> RuleVerdict:
    name = "do_not_contact"
    if _is_reply(ctx):
        return RuleVerdict(name, Outcome.ALLOW)
    if ctx.preferences.do_not_contact:
        allowed = {EXCEPTION_PURPOSES.get(e, e) for e in ctx.preferences.dnc_exceptions}
        if ctx.purpose not in allowed:
            return RuleVerdict(name, Outcome.BLOCK, "do_not_contact_requested")
    if ctx.borrower_do_not_contact and ctx.purpose not in gate.DNC_EXCEPTIONS:
        return RuleVerdict(name, Outcome.BLOCK, "borrower_do_not_contact")
    return RuleVerdict(name, Outcome.ALLOW)


def _consent(ctx: AttemptContext) -> RuleVerdict:
    name = "channel_consent"
    if ctx.consent.state != "revoked":
        return RuleVerdict(name, Outcome.ALLOW)
    if ctx.purpose == "help_reply":
        return RuleVerdict(name, Outcome.ALLOW)  # carriers require HELP answers after STOP
    if ctx.purpose == "opt_out_confirmation" and ctx.consent.is_confirmation_of_revocation:
        return RuleVerdict(name, Outcome.ALLOW)  # the one confirmation (TCPA, 1006.14(h))
    return RuleVerdict(name, Outcome.BLOCK, "consent_revoked")


def _medium(ctx: AttemptContext) -> RuleVerdict:
    name = "medium_preference"
    if not _is_reply(ctx) and ctx.channel in ctx.preferences.disallowed_channels:
        return RuleVerdict(name, Outcome.BLOCK, "channel_not_allowed_by_borrower")
    return RuleVerdict(name, Outcome.ALLOW)


def _employer_email(ctx: AttemptContext) -> RuleVerdict:
    name = "employer_email"
    if ctx.channel is not Channel.EMAIL or not ctx.policy.employer_email_rule:
        return RuleVerdict(name, Outcome.ALLOW)
    if not us_rules_apply(ctx.location.jurisdiction):
        return RuleVerdict(name, Outcome.ALLOW, "not_us_jurisdiction")
    cp = ctx.contact_point
    reason = content.employer_email_verdict(
        source=cp.source,
        label=cp.label,
        consumer_used_for_debt=cp.used_by_consumer_for_debt,
        # Consent to *that* address (1006.22(f)(3)), not a borrower-wide grant.
        consumer_consented=cp.consumer_consented
        or (ctx.consent.state == "granted" and ctx.consent.scope == "contact_point"),
    )
    if reason and not _is_reply(ctx):
        return RuleVerdict(name, Outcome.BLOCK, reason)
    return RuleVerdict(name, Outcome.ALLOW)


def _window(ctx: AttemptContext) -> hours.ContactWindow:
    prefs = ctx.preferences
    extra = list(prefs.inconvenient)
    if prefs.contact_hours is not None:
        start, end = prefs.contact_hours
        if start != end:
            extra.append(hours.InconvenientPeriod.only_between(start, end))
    if not extra:
        return ctx.policy.window
    base = ctx.policy.window
    return hours.ContactWindow(
        start=base.start,
        end=base.end,
        start_inclusive=base.start_inclusive,
        weekday_overrides=base.weekday_overrides,
        inconvenient=(*base.inconvenient, *extra),
        observe_holidays=base.observe_holidays,
        holiday_hours=base.holiday_hours,
    )


def _zone_set(ctx: AttemptContext) -> zones.ZoneSet:
    loc = ctx.location
    return zones.plausible_zones(
        stated=ctx.preferences.contact_hours_zone or loc.stated_zone,
        country=loc.country,
        region=loc.region,
        phone_e164=loc.phone_e164,
        default_zone=loc.default_zone,
        phone=loc.phone_signal,
    )


def _holiday_calendar(loc: Location) -> tuple[str | None, str | None]:
    if not loc.country:
        return None, None
    country = loc.country.strip().upper()
    if country in ("USA", "UNITED STATES"):
        country = "US"
    region = (loc.region or "").strip().upper() or None
    return country, region


def assess(ctx: AttemptContext, memo: dict[Any, Any] | None = None) -> Decision:
    """Every rule's verdict for the attempt; block beats defer beats allow.

    ``memo`` (a dict the caller keeps for one batch) shares work between attempts: equal
    contexts (same facts, e.g. many borrowers in one zone with nothing on file) get one
    decision, and the contact-hours evaluation is shared by equal zones and windows.
    """
    if memo is None:
        return _assess(ctx, None)
    key = ("decision", ctx)
    cached = memo.get(key)
    if cached is None:
        cached = memo[key] = _assess(ctx, memo)
    assert isinstance(cached, Decision)
    return cached


def _assess(ctx: AttemptContext, memo: dict[Any, Any] | None) -> Decision:
    if ctx.now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    verdicts = [_do_not_contact(ctx), _case_state(ctx), _consent(ctx), _medium(ctx)]
    verdicts.append(_employer_email(ctx))
    evidence: dict[str, Any] = {
        "purpose": ctx.purpose,
        "immediate": ctx.immediate,
        "jurisdiction": ctx.location.jurisdiction,
        "consent": ctx.consent.as_record(),
        "contactPoint": ctx.contact_point.as_record(),
        "preferences": ctx.preferences.as_record(),
        "policy": ctx.policy.as_record(),
    }
    zone_set = _zone_set(ctx)
    hours_config: tuple[hours.ContactWindow, str | None, str | None] | None = None
    if _is_reply(ctx):
        verdicts.append(RuleVerdict(hours.RULE_NAME, Outcome.ALLOW, "reply_to_borrower"))
    else:
        country, region = _holiday_calendar(ctx.location)
        window = _window(ctx)
        hours_config = (window, country, region)
        key = ("hours", ctx.now, zone_set.zones, window, country, region)
        hv = memo.get(key) if memo is not None else None
        if hv is None or hv.zones != zone_set:
            hv = hours.evaluate_hours(
                ctx.now, zone_set, window, country=country, subdivision=region
            )
            if memo is not None:
                memo[key] = hv
        verdicts.append(hours.to_rule_verdict(hv))
        evidence["contactHours"] = hv.as_record()

    frequency = ctx.policy.frequency_for(ctx.location.jurisdiction)
    if ctx.prior_consent and ctx.channel is Channel.VOICE:
        frequency = caps.FrequencyPolicy(
            caps=tuple(r for r in frequency.caps if not r.honors_prior_consent_exclusion),
            post_conversation=None,
            bunching=frequency.bunching,
        )
        evidence["priorConsent"] = True
    capped = any(ctx.channel in rule.channels for rule in frequency.caps) or (
        frequency.post_conversation is not None
        and ctx.channel in frequency.post_conversation.channels
    )
    if capped and not _is_reply(ctx):
        cv = caps.evaluate_caps(
            ctx.now,
            ctx.channel,
            contact_point_id=ctx.contact_point_id,
            number_kind=ctx.contact_point.number_kind,
            history=ctx.history,
            policy=frequency,
            zones=tuple(ZoneInfo(z) for z in sorted(zone_set.zones)),
        )
        # As for contact hours, a cap is first read as "wait until": an immediate attempt
        # is turned into a block below, keeping the next allowed moment (a call blocked
        # by the 7-in-7 cap must still say when it may be placed).
        verdicts.append(caps.to_rule_verdict(cv, immediate=False))
        evidence["frequency"] = cv.as_record()

    facts = AttemptFacts(
        channel=ctx.channel,
        now=ctx.now,
        borrower_do_not_contact=ctx.borrower_do_not_contact,
        case_status=ctx.case_status,
        contact_point_opted_out=ctx.consent.state == "revoked",
        channel_allowed=ctx.channel not in ctx.preferences.disallowed_channels,
        purpose=ctx.purpose,
    )
    decision = gate.combine(facts, tuple(verdicts), evidence)
    if (
        decision.outcome is Outcome.DEFER
        and decision.defer_until is not None
        and hours_config is not None
        and "frequency" in evidence
    ):
        # A cap frees up at a moment that may lie outside contact hours (the 7-day expiry
        # of a call at 20:30 EST lands at 21:30 EDT across a DST change; the borrower's
        # own hours may be narrower). Caps never close again as time passes, so the next
        # moment every rule allows is the first convenient time from there.
        window, country, region = hours_config
        later = hours.evaluate_hours(
            decision.defer_until, zone_set, window, country=country, subdivision=region
        )
        if not later.allowed and later.next_allowed_utc is not None:
            evidence["contactHoursWhenCapsAllow"] = later.as_record()
            decision = dataclasses.replace(
                decision,
                defer_until=later.next_allowed_utc,
                next_allowed_at=later.next_allowed_utc,
                evidence=evidence,
            )
    if ctx.immediate and decision.outcome is Outcome.DEFER:
        # A call placed now cannot wait for the window: refuse it, say when it may be.
        return gate.Decision(
            Outcome.BLOCK,
            decision.verdicts,
            facts,
            defer_until=None,
            reasons=decision.reasons,
            evidence=evidence,
            next_allowed_at=decision.defer_until,
        )
    return decision


def _case_state(ctx: AttemptContext) -> RuleVerdict:
    verdict = gate.case_state(
        AttemptFacts(
            channel=ctx.channel,
            now=ctx.now,
            borrower_do_not_contact=False,
            case_status=ctx.case_status,
            purpose=ctx.purpose,
        )
    )
    if verdict.outcome is Outcome.BLOCK and ctx.purpose in REPLY_PURPOSES:
        # A cease-communication case may still get the confirmation of its opt-out.
        return RuleVerdict(verdict.rule, Outcome.ALLOW, "reply_to_borrower")
    return verdict
