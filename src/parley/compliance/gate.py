"""Rules over a contact attempt's facts, producing a recorded decision.

The rule engine and the simplest rules (do-not-contact, case states that stop contact,
channel permissions). The full evaluation of one attempt — contact hours, frequency caps,
the consent ledger, preferences, employer email — is :mod:`parley.compliance.assess`,
which builds on these types and :func:`combine`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from parley.domain.channels import Channel


class Outcome(StrEnum):
    ALLOW = "allow"
    DEFER = "defer"
    BLOCK = "block"


# Case states in which a collector must stop contacting the borrower.
STOP_CONTACT_STATES: dict[str, str] = {
    "disputed": "case_disputed",
    "cease_communication": "cease_communication_requested",
    "attorney_represented": "attorney_represented",
    "bankruptcy": "bankruptcy",
    "deceased": "borrower_deceased",
}


@dataclass(frozen=True, slots=True)
class AttemptFacts:
    """What the gate knows about one contact attempt; recorded with the decision."""

    channel: Channel
    now: datetime
    borrower_do_not_contact: bool
    case_status: str
    contact_point_opted_out: bool = False
    channel_allowed: bool = True
    purpose: str = "collection"  # e.g. legal_notice, payment_confirmation

    def as_record(self) -> dict[str, Any]:
        return {
            "channel": self.channel.value,
            "now": self.now.isoformat(),
            "borrowerDoNotContact": self.borrower_do_not_contact,
            "caseStatus": self.case_status,
            "contactPointOptedOut": self.contact_point_opted_out,
            "channelAllowed": self.channel_allowed,
            "purpose": self.purpose,
        }


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    rule: str
    outcome: Outcome
    reason: str | None = None
    defer_until: datetime | None = None

    def as_record(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "deferUntil": self.defer_until.isoformat() if self.defer_until else None,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    verdicts: tuple[RuleVerdict, ...]
    facts: AttemptFacts
    defer_until: datetime | None = None
    reasons: tuple[str, ...] = field(default=())
    # What the rules used beyond `facts` (zones and local times, counts, consent record).
    evidence: Mapping[str, Any] = field(default_factory=dict)
    # When the attempt could be made instead (a deferred message: defer_until; an
    # immediate attempt that was refused: the next allowed moment, when there is one).
    next_allowed_at: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW

    def rules_record(self) -> list[dict[str, Any]]:
        return [v.as_record() for v in self.verdicts]

    def facts_record(self) -> dict[str, Any]:
        """The facts stored with the decision: the attempt's own and the rules' evidence."""
        return {**self.facts.as_record(), **self.evidence}


Rule = Callable[[AttemptFacts], RuleVerdict]

# Purposes that remain allowed despite a do-not-contact flag (seed: opt-out exceptions).
DNC_EXCEPTIONS = frozenset({"legal_notice", "payment_confirmation"})


def do_not_contact(facts: AttemptFacts) -> RuleVerdict:
    if facts.borrower_do_not_contact and facts.purpose not in DNC_EXCEPTIONS:
        return RuleVerdict("do_not_contact", Outcome.BLOCK, "borrower_do_not_contact")
    return RuleVerdict("do_not_contact", Outcome.ALLOW)


def case_state(facts: AttemptFacts) -> RuleVerdict:
    reason = STOP_CONTACT_STATES.get(facts.case_status)
    if reason and facts.purpose != "legal_notice":
        return RuleVerdict("case_state", Outcome.BLOCK, reason)
    return RuleVerdict("case_state", Outcome.ALLOW)


def channel_consent(facts: AttemptFacts) -> RuleVerdict:
    if facts.contact_point_opted_out:
        return RuleVerdict("channel_consent", Outcome.BLOCK, "contact_point_opted_out")
    if not facts.channel_allowed:
        return RuleVerdict("channel_consent", Outcome.BLOCK, "channel_not_allowed")
    return RuleVerdict("channel_consent", Outcome.ALLOW)


DEFAULT_RULES: tuple[Rule, ...] = (do_not_contact, case_state, channel_consent)


def evaluate(facts: AttemptFacts, rules: Sequence[Rule] = DEFAULT_RULES) -> Decision:
    """Run every rule (all verdicts are kept as evidence); block beats defer beats allow."""
    return combine(facts, tuple(rule(facts) for rule in rules))


def combine(
    facts: AttemptFacts,
    verdicts: tuple[RuleVerdict, ...],
    evidence: Mapping[str, Any] | None = None,
) -> Decision:
    """One decision from every rule's verdict: block beats defer beats allow.

    A DEFER without a time is treated as a BLOCK: deferring to "no known time" must not
    let the attempt through.
    """
    evidence = dict(evidence or {})
    blocks = tuple(v.reason or v.rule for v in verdicts if v.outcome is Outcome.BLOCK)
    blocks += tuple(
        v.reason or v.rule for v in verdicts if v.outcome is Outcome.DEFER and v.defer_until is None
    )
    if blocks:
        return Decision(Outcome.BLOCK, verdicts, facts, reasons=blocks, evidence=evidence)
    defers = [v for v in verdicts if v.outcome is Outcome.DEFER and v.defer_until]
    if defers:
        until = max(v.defer_until for v in defers if v.defer_until)
        reasons = tuple(v.reason or v.rule for v in defers)
        return Decision(
            Outcome.DEFER,
            verdicts,
            facts,
            defer_until=until,
            reasons=reasons,
            evidence=evidence,
            next_allowed_at=until,
        )
    return Decision(Outcome.ALLOW, verdicts, facts, evidence=evidence)
