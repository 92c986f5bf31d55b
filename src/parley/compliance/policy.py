"""An organization's compliance policy: the rules' numbers as data, US federal by default.

Stored as JSON per organization (``compliance_policies.settings``, camelCase) and parsed
here into typed values the rules take. Every key is optional; an empty document is the
US federal policy (Reg F contact hours 08:00-21:00, 7 calls in 7 days, the opt-out
notice and the debt-collector disclosure) plus the built-in state overlays
(Massachusetts: 2 telephone communications per 7 days per debt).

Shape::

    {
      "contactHours": {"start": "08:00", "end": "21:00",
                       "weekdays": {"sat": ["09:00", "17:00"], "sun": null},
                       "observeHolidays": false, "holidayHours": null},
      "frequency": {"federal": true, "stateOverlays": true, "postConversationDays": 7,
                    "additionalCaps": [{"name": "ny_texts", "jurisdiction": "US-NY",
                                        "channels": ["sms"], "maxAttempts": 3,
                                        "windowDays": 7, "scope": "person_debt"}]},
      "disclosure": {"enabled": true, "initialText": "...", "subsequentText": "..."},
      "optOutNotice": {"sms": "Reply STOP to opt out.", "whatsapp": "...",
                       "email": "... {unsubscribe_url}"},
      "employerEmailRule": true,
      "helpContact": "+1 555 0100"
    }

Invalid documents raise :class:`PolicyError` with every problem as (field, message).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import time, timedelta
from typing import Any

from parley.compliance import caps, content
from parley.compliance.hours import ContactWindow, DayHours
from parley.domain.channels import Channel

__all__ = ["DEFAULT_POLICY", "CompliancePolicy", "PolicyError", "parse_policy"]

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_KNOWN_KEYS = frozenset(
    {
        "contactHours",
        "frequency",
        "disclosure",
        "optOutNotice",
        "employerEmailRule",
        "helpContact",
    }
)


class PolicyError(ValueError):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors


@dataclass(frozen=True)
class ScopedCap:
    """An organization-defined cap, applying where the borrower's jurisdiction matches."""

    jurisdiction: str | None  # "US", "US-NY", or None for everywhere
    rule: caps.CapRule


@dataclass(frozen=True)
class CompliancePolicy:
    window: ContactWindow = field(default_factory=ContactWindow)
    federal_caps: bool = True
    state_overlays: bool = True
    post_conversation_days: int | None = 7
    additional_caps: tuple[ScopedCap, ...] = ()
    disclosure: content.DisclosurePolicy = field(default_factory=content.DisclosurePolicy)
    opt_out_notice: content.OptOutNotice = field(default_factory=content.OptOutNotice)
    employer_email_rule: bool = True
    help_contact: str = "our support team"
    source: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def frequency_for(self, jurisdiction: str | None) -> caps.FrequencyPolicy:
        """The caps that apply to a borrower in ``jurisdiction`` ("US", "US-MA", ...)."""
        return _frequency_for(self, jurisdiction)

    def _build_frequency(self, jurisdiction: str | None) -> caps.FrequencyPolicy:
        parts: list[caps.FrequencyPolicy] = []
        if self.federal_caps and _within(jurisdiction, "US"):
            federal = caps.US_FEDERAL
            if self.post_conversation_days is None:
                federal = replace(federal, post_conversation=None)
            elif federal.post_conversation is not None:
                federal = replace(
                    federal,
                    post_conversation=replace(
                        federal.post_conversation, days=self.post_conversation_days
                    ),
                )
            parts.append(federal)
        if self.state_overlays and _within(jurisdiction, "US-MA"):
            parts.append(caps.US_MA_OVERLAY_CAPS)
        extra = tuple(
            c.rule
            for c in self.additional_caps
            if c.jurisdiction is None or _within(jurisdiction, c.jurisdiction)
        )
        if extra:
            parts.append(caps.FrequencyPolicy(caps=extra, post_conversation=None, bunching=None))
        if not parts:
            return caps.FrequencyPolicy(caps=(), post_conversation=None, bunching=None)
        return caps.combine(*parts)

    def as_record(self) -> dict[str, Any]:
        return {
            "contactHours": self.window.as_record(),
            "federalCaps": self.federal_caps,
            "stateOverlays": self.state_overlays,
            "postConversationDays": self.post_conversation_days,
            "additionalCaps": [
                {"jurisdiction": c.jurisdiction, "name": c.rule.name} for c in self.additional_caps
            ],
            "disclosure": self.disclosure.enabled,
            "employerEmailRule": self.employer_email_rule,
        }


DEFAULT_POLICY = CompliancePolicy()


@functools.lru_cache(maxsize=1024)
def _frequency_for(policy: CompliancePolicy, jurisdiction: str | None) -> caps.FrequencyPolicy:
    # Called for every attempt; a policy is immutable, so its caps per place are too.
    return policy._build_frequency(jurisdiction)


def _within(jurisdiction: str | None, scope: str) -> bool:
    """'US-MA' is within 'US' and 'US-MA'; an unknown jurisdiction is within nothing
    but federal US is assumed when the country is unknown (Parley's default market)."""
    if jurisdiction is None:
        return scope == "US"
    return jurisdiction == scope or jurisdiction.startswith(scope + "-")


def _time(value: Any, where: str, errors: list[tuple[str, str]]) -> time | None:
    if not isinstance(value, str):
        errors.append((where, "must be a time like '08:00'"))
        return None
    if value in ("24:00", "24:00:00"):
        return time(0)
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        errors.append((where, "must be a time like '08:00'"))
        return None
    if parsed.tzinfo is not None:
        errors.append((where, "must be a local time without an offset"))
        return None
    return parsed


def _hours(value: Any, where: str, errors: list[tuple[str, str]]) -> DayHours | None:
    if not (isinstance(value, list) and len(value) == 2):
        errors.append((where, "must be [start, end], e.g. ['09:00', '17:00'], or null"))
        return None
    start, end = _time(value[0], where, errors), _time(value[1], where, errors)
    return DayHours(start, end) if start is not None and end is not None else None


def _bool(
    doc: Mapping[str, Any], key: str, where: str, default: bool, errors: list[tuple[str, str]]
) -> bool:
    value = doc.get(key, default)
    if not isinstance(value, bool):
        errors.append((f"{where}.{key}" if where else key, "must be true or false"))
        return default
    return value


def _object(doc: Mapping[str, Any], key: str, errors: list[tuple[str, str]]) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append((key, "must be an object"))
        return {}
    return value


def _contact_hours(doc: Mapping[str, Any], errors: list[tuple[str, str]]) -> ContactWindow:
    ch = _object(doc, "contactHours", errors)
    unknown = set(ch) - {"start", "end", "weekdays", "observeHolidays", "holidayHours"}
    for key in sorted(unknown):
        errors.append((f"contactHours.{key}", "unknown setting"))
    start = _time(ch.get("start", "08:00"), "contactHours.start", errors) or time(8)
    end_raw = ch.get("end", "21:00")
    end = _time(end_raw, "contactHours.end", errors)
    if end is None:
        end = time(21)
    overrides: dict[int, DayHours | None] = {}
    weekdays = ch.get("weekdays") or {}
    if not isinstance(weekdays, Mapping):
        errors.append(("contactHours.weekdays", "must be an object keyed by mon..sun"))
        weekdays = {}
    for name, hours in weekdays.items():
        day = _DAYS.get(str(name).lower())
        if day is None:
            errors.append((f"contactHours.weekdays.{name}", "must be one of mon..sun"))
            continue
        overrides[day] = (
            None if hours is None else _hours(hours, f"contactHours.weekdays.{name}", errors)
        )
    holiday_hours = ch.get("holidayHours")
    return ContactWindow(
        start=start,
        end=end,
        weekday_overrides=overrides,
        observe_holidays=_bool(ch, "observeHolidays", "contactHours", False, errors),
        holiday_hours=None
        if holiday_hours is None
        else _hours(holiday_hours, "contactHours.holidayHours", errors),
    )


def _channels(value: Any, where: str, errors: list[tuple[str, str]]) -> frozenset[Channel]:
    if not isinstance(value, list) or not value:
        errors.append((where, "must be a non-empty list of channels"))
        return frozenset()
    out = set()
    for v in value:
        try:
            out.add(Channel(v))
        except ValueError:
            errors.append((where, f"unknown channel {v!r}"))
    return frozenset(out)


# Names of the built-in rules an organization's own cap must not reuse.
_BUILT_IN_RULES = frozenset(
    {
        *(c.name for c in caps.US_FEDERAL.caps),
        *(c.name for c in caps.US_MA_OVERLAY_CAPS.caps),
        caps.REG_F_POST_CONVERSATION.name,
    }
)


def _additional_caps(raw: Any, errors: list[tuple[str, str]]) -> tuple[ScopedCap, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.append(("frequency.additionalCaps", "must be a list"))
        return ()
    out: list[ScopedCap] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        where = f"frequency.additionalCaps[{i}]"
        if not isinstance(item, Mapping):
            errors.append((where, "must be an object"))
            continue
        before = len(errors)
        name = item.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 60:
            errors.append((f"{where}.name", "must be a name of 1-60 characters"))
        elif name in _BUILT_IN_RULES or name in names:
            # Verdicts name the failing rule, so the gate refuses to combine two rules of
            # one name: accepting this would make every later contact attempt fail.
            errors.append((f"{where}.name", f"{name!r} is already the name of another rule"))
        else:
            names.add(name)
        channels = _channels(item.get("channels"), f"{where}.channels", errors)
        max_attempts = item.get("maxAttempts")
        if type(max_attempts) is not int or not 1 <= max_attempts <= 1000:
            errors.append((f"{where}.maxAttempts", "must be an integer 1-1000"))
        days = item.get("windowDays")
        if type(days) is not int or not 1 <= days <= 366:
            errors.append((f"{where}.windowDays", "must be an integer 1-366"))
        scope = item.get("scope", "person_debt")
        if scope not in ("person_debt", "number"):
            errors.append((f"{where}.scope", "must be person_debt or number"))
        jurisdiction = item.get("jurisdiction")
        if jurisdiction is not None and (
            not isinstance(jurisdiction, str) or not 2 <= len(jurisdiction) <= 10
        ):
            errors.append((f"{where}.jurisdiction", "must be like 'US' or 'US-NY'"))
        if len(errors) > before:
            continue
        try:
            rule = caps.CapRule(
                name=str(name),
                channels=channels,
                max_attempts=int(max_attempts),  # type: ignore[arg-type]
                window=timedelta(days=int(days)),  # type: ignore[arg-type]
                scope=scope,
                number_kinds=None,
                honors_prior_consent_exclusion=False,
                excludes_unconnected=True,
                citation=str(item.get("citation") or "organization policy"),
            )
        except ValueError as exc:
            errors.append((where, str(exc)))
            continue
        out.append(ScopedCap(jurisdiction.upper() if jurisdiction else None, rule))
    return tuple(out)


def _frequency(doc: Mapping[str, Any], errors: list[tuple[str, str]]) -> dict[str, Any]:
    fr = _object(doc, "frequency", errors)
    for key in sorted(
        set(fr) - {"federal", "stateOverlays", "postConversationDays", "additionalCaps"}
    ):
        errors.append((f"frequency.{key}", "unknown setting"))
    days = fr.get("postConversationDays", 7)
    if days is not None and (type(days) is not int or not 1 <= days <= 60):
        errors.append(("frequency.postConversationDays", "must be an integer 1-60 or null"))
        days = 7
    return {
        "federal_caps": _bool(fr, "federal", "frequency", True, errors),
        "state_overlays": _bool(fr, "stateOverlays", "frequency", True, errors),
        "post_conversation_days": days,
        "additional_caps": _additional_caps(fr.get("additionalCaps"), errors),
    }


def _text(value: Any, where: str, errors: list[tuple[str, str]], limit: int = 500) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        errors.append((where, f"must be a non-empty text of at most {limit} characters"))
        return None
    return value.strip()


def _disclosure(doc: Mapping[str, Any], errors: list[tuple[str, str]]) -> content.DisclosurePolicy:
    d = _object(doc, "disclosure", errors)
    for key in sorted(set(d) - {"enabled", "initialText", "subsequentText"}):
        errors.append((f"disclosure.{key}", "unknown setting"))
    base = content.DisclosurePolicy()
    try:
        return replace(
            base,
            enabled=_bool(d, "enabled", "disclosure", base.enabled, errors),
            initial_text=_text(d.get("initialText"), "disclosure.initialText", errors)
            or base.initial_text,
            subsequent_text=_text(d.get("subsequentText"), "disclosure.subsequentText", errors)
            or base.subsequent_text,
        )
    except ValueError as exc:
        errors.append(("disclosure", str(exc)))
        return base


def _opt_out_notice(doc: Mapping[str, Any], errors: list[tuple[str, str]]) -> content.OptOutNotice:
    n = _object(doc, "optOutNotice", errors)
    fields = {
        "sms": "sms",
        "whatsapp": "whatsapp",
        "email": "email_text",
        "emailHtml": "email_html",
    }
    for key in sorted(set(n) - set(fields)):
        errors.append((f"optOutNotice.{key}", "unknown setting"))
    texts = {
        attr: value
        for key, attr in fields.items()
        if (value := _text(n.get(key), f"optOutNotice.{key}", errors, 160 if key == "sms" else 500))
        is not None
    }
    try:
        return replace(content.OptOutNotice(), **texts)
    except ValueError as exc:
        errors.append(("optOutNotice", str(exc)))
        return content.OptOutNotice()


def parse_policy(doc: Mapping[str, Any] | None) -> CompliancePolicy:
    """Parse and validate an organization's policy document (None/empty: defaults)."""
    doc = doc or {}
    errors: list[tuple[str, str]] = []
    if not isinstance(doc, Mapping):
        raise PolicyError([("", "must be an object")])
    for key in sorted(set(doc) - _KNOWN_KEYS):
        errors.append((key, "unknown setting"))
    window = _contact_hours(doc, errors)
    frequency = _frequency(doc, errors)
    disclosure = _disclosure(doc, errors)
    notice = _opt_out_notice(doc, errors)
    help_contact = _text(doc.get("helpContact"), "helpContact", errors, 100)
    policy = CompliancePolicy(
        window=window,
        disclosure=disclosure,
        opt_out_notice=notice,
        employer_email_rule=_bool(doc, "employerEmailRule", "", True, errors),
        help_contact=help_contact or DEFAULT_POLICY.help_contact,
        source=dict(doc),
        **frequency,
    )
    if errors:
        raise PolicyError(errors)
    return policy
