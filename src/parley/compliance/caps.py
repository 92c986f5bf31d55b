"""Frequency caps per person and debt: may this contact attempt be placed now, and if not, when?

One evaluation looks at one new attempt (a channel, a contact point, its number kind) and
the person's past attempts about this debt, and answers with a :class:`CapsVerdict`: allowed
or not, the next allowed instant, the failing rules, the counts per rule, bunching flags
and the evidence (which past attempts were counted, which were excluded and why).

Rules (all data; presets below)
-------------------------------
* :class:`CapRule` -- at most ``max_attempts`` counted attempts in any window of length
  ``window``, per person and debt (``scope="person_debt"``, every number and address of
  the person) or per contact point (``scope="number"``), over the rule's ``channels`` and,
  optionally, only numbers of some kinds (``number_kinds``).
* :class:`PostConversationRule` -- no call in the ``days`` consecutive local calendar days
  that start with the day of a telephone conversation (the conversation day is day 1: a
  conversation on local day D blocks calls through D+6; the next allowed instant is the
  start of local day D+7).
* :class:`BunchingRule` -- flags, never blocks: N unanswered calls to one number within a
  few minutes, or M calls in one local day.

What counts (Regulation F, 12 CFR 1006.14(b)(2)-(3))
----------------------------------------------------
A call that rings unanswered, reaches voicemail, leaves a message, is still pending (its
outcome is not known yet) or becomes a conversation counts. Excluded from the Reg F count
(and only where the rule says so: ``excludes_unconnected``,
``honors_prior_consent_exclusion``): calls that do not connect to the dialed number (busy,
not in service, network failure: :data:`UNCONNECTED_RESULTS`) and calls placed with the
person's direct prior consent given within the last 7 days (``PastAttempt.prior_consent``;
the caller sets it only for calls inside that 7-day consent period). A *new* attempt
placed with such consent (``evaluate_caps(..., prior_consent=True)``) is not subject to
rules that honour the exclusion (neither the count nor the post-conversation period, as
the CFPB reads 1006.14(b)(3)); it still counts for rules that do not (Massachusetts).
A conversation on a consented call still starts the post-conversation period
(conservative: the regulation's exclusion is about the consented calls themselves).

Massachusetts (940 CMR 7.04(1)(f))
----------------------------------
"Telephone communications" are calls, text messages and recorded audio messages: the
overlay counts :attr:`Channel.VOICE`, :attr:`Channel.SMS` and :attr:`Channel.WHATSAPP`
(a WhatsApp message goes to the person's phone number and is read as a text message
there; counting it is the conservative reading). Email does not count. The regulation
counts communications *initiated* and has no exclusion like Reg F's, so every attempt
counts, whatever its result or consent (``excludes_unconnected=False``,
``honors_prior_consent_exclusion=False``): the conservative reading, and the one the
Massachusetts SJC took for unanswered calls (Armata v. Target Corp., 2018).
Personal numbers (residence, cell, other personal) share one budget of 2 per 7 days and
other numbers (e.g. work) one budget of 2 per 30 days, both per debt; aggregating all
numbers of a kind (``scope="person_debt"``) is stricter than a per-number reading.

Windows: rolling and calendar
-----------------------------
A new attempt at ``now`` is allowed by a cap rule iff (counted past attempts in the
lookback) + 1 <= ``max_attempts``. The lookback of a window W holds every attempt ``s``
with ``now - W < s`` (the rolling window ``(now - W, now]``), and -- when W is a whole
number of days, ``calendar_days=True`` (the default) -- also every attempt whose local
calendar date, in any plausible zone, lies within the ``W/1 day`` consecutive local days
ending with today (``date(s) >= date(now) - (days - 1)``).

Why this guarantees that no period ever holds more than ``max_attempts`` counted
attempts placed while the rule applied: suppose some period P did -- a span [x, x + W),
or a run of ``days`` consecutive local calendar days in a plausible zone. Let t be the
last of them to be placed. Every other one, s, was placed before t and lies in P: if P
is a span, x <= s <= t < x + W, so t - W < s; if P is a run of days, date(s) >=
date(t) - (days - 1). Either way s was in t's lookback, so t saw at least
``max_attempts`` counted attempts and was refused -- a contradiction.

The calendar part is not redundant: a run of 7 local days that contains a fall-back DST
change lasts 7 x 24 h + 1 h, so a purely rolling 7 x 24 h lookback would let an 8th call
through at 23:30 on the 7th local day after a call at 00:30 on the 1st (see the tests).
When a spring-forward change shortens the run, the rolling part is the stricter one.
Either way the union is conservative for both readings of "7 consecutive days".

Each counted attempt therefore *expires* at ``max(s + W, start of local day date_z(s) +
days in every zone z)``; the attempt count only falls as time passes, so when a rule
fails, its next allowed instant is the expiry of the (count - max + 1)-th earliest
expiring counted attempt. The verdict's next allowed instant is the latest such instant
over the failing rules (with the post-conversation end), and it is exact: at that
instant, with no further attempts, every rule passes, and no earlier instant does.

Local days and DST
------------------
Dates are local dates in each plausible zone (:mod:`zoneinfo`; no fixed offsets). The
start of a local day is the first instant whose local date is that day: midnight (the
first one where the clock is set back across it within the day, e.g. America/Havana in
November), or the transition itself where midnight is skipped (Havana in March). Should
a clock ever be set back from one date into the previous one, the later midnight is
used. With several plausible zones a day-based period ends at the latest of the
per-zone instants: it lasts until it has ended in every plausible zone.

Conservative handling of incomplete facts
-----------------------------------------
* History dated after ``now`` (clock skew, a row written by another worker) is counted
  as if inside every window, and a future-dated conversation blocks from now.
* An unknown contact point (``None``, on either side) is treated as the same number.
* An unknown number kind (``None``, on either side) is treated as every kind.
* ``zones`` must name at least one plausible zone (ValueError otherwise): day boundaries
  cannot be computed without one.

``history`` must hold the attempts to this person about this debt (the caller's query);
rules narrow it further by channel, number kind and contact point. The module is pure:
no I/O, no database.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from parley.compliance.gate import AttemptFacts, Outcome, Rule, RuleVerdict
from parley.domain.channels import Channel

__all__ = [
    "BUNCHING_DAILY",
    "BUNCHING_UNANSWERED",
    "CONVERSATION_RESULTS",
    "MA_TELEPHONE_OTHER",
    "MA_TELEPHONE_PERSONAL",
    "REG_F_BUNCHING",
    "REG_F_CALL_FREQUENCY",
    "REG_F_POST_CONVERSATION",
    "RULE_NAME",
    "UNANSWERED_RESULTS",
    "UNCONNECTED_RESULTS",
    "US_FEDERAL",
    "US_MA_OVERLAY_CAPS",
    "AttemptEvidence",
    "AttemptResult",
    "BunchingRule",
    "CapCount",
    "CapRule",
    "CapScope",
    "CapsVerdict",
    "ConversationCheck",
    "FrequencyPolicy",
    "NumberKind",
    "PastAttempt",
    "PostConversationRule",
    "as_rule",
    "combine",
    "evaluate_caps",
    "to_rule_verdict",
]

RULE_NAME = "frequency_caps"

NumberKind = Literal["personal", "other"]
CapScope = Literal["person_debt", "number"]
NUMBER_KINDS: frozenset[str] = frozenset(get_args(NumberKind))
CAP_SCOPES: frozenset[str] = frozenset(get_args(CapScope))

# Why a past attempt inside a rule's window was not counted (recorded as evidence).
EXCLUDED_DID_NOT_CONNECT = "did_not_connect"
EXCLUDED_PRIOR_CONSENT = "prior_consent"
EXCLUDED_OTHER_CONTACT_POINT = "other_contact_point"

_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)


class AttemptResult(StrEnum):
    """How a past contact attempt ended (or that it has not ended yet)."""

    PENDING = "pending"  # outcome not known yet: counts, it may have connected
    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail"
    LEFT_MESSAGE = "left_message"
    CONVERSATION = "conversation"  # a telephone conversation: counts and starts the period
    # A telephone conversation on a call the person placed: it starts the post-conversation
    # period like any conversation (1006.14(b)(2)(i)(B) does not ask who dialed), but it is
    # not a call attempt of ours, so no frequency cap counts it and bunching ignores it.
    INBOUND_CONVERSATION = "inbound_conversation"
    BUSY = "busy"
    NOT_IN_SERVICE = "not_in_service"
    NETWORK_FAILURE = "network_failure"
    # Click-to-call: the agent's leg never connected, so the borrower was never dialed.
    NOT_DIALED = "not_dialed"
    DELIVERED = "delivered"  # texts, emails
    SENT = "sent"


# 12 CFR 1006.14(b)(3): calls that "do not connect to the dialed number" -- a busy signal,
# a number not in service, a network failure -- are not counted toward the call frequency.
# A call that rings unanswered or reaches voicemail did connect and is counted.
UNCONNECTED_RESULTS: frozenset[AttemptResult] = frozenset(
    {
        AttemptResult.BUSY,
        AttemptResult.NOT_IN_SERVICE,
        AttemptResult.NETWORK_FAILURE,
        AttemptResult.NOT_DIALED,  # never reached the dialed number: trivially unconnected
    }
)

# For bunching, every call that did not become a conversation went unanswered (including
# pending ones, whose outcome may still be "no answer"): flags err on the side of flagging.
UNANSWERED_RESULTS: frozenset[AttemptResult] = frozenset(AttemptResult) - {
    AttemptResult.CONVERSATION,
    AttemptResult.INBOUND_CONVERSATION,
}

CONVERSATION_RESULTS: frozenset[AttemptResult] = frozenset(
    {AttemptResult.CONVERSATION, AttemptResult.INBOUND_CONVERSATION}
)


def _aware_utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _channels(values: Iterable[Channel | str], what: str) -> frozenset[Channel]:
    channels = frozenset(Channel(v) for v in values)
    if not channels:
        raise ValueError(f"{what}: channels must not be empty")
    return channels


def _positive_int(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def _check_kind(kind: str | None, what: str) -> None:
    if kind is not None and kind not in NUMBER_KINDS:
        raise ValueError(f"{what} must be one of {sorted(NUMBER_KINDS)} or None, got {kind!r}")


# --- facts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PastAttempt:
    """One earlier contact attempt to the person about the debt.

    ``number_kind``: ``"personal"`` (residence, cell or other personal number),
    ``"other"`` (e.g. a work number) or ``None`` when unknown (then counted by every
    number-kind rule). ``prior_consent``: placed with the person's direct prior consent
    given within the 7 days before the call (excluded from the Reg F count).
    """

    at: datetime
    channel: Channel
    contact_point_id: str | None
    number_kind: NumberKind | None
    result: AttemptResult
    prior_consent: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _aware_utc(self.at, "PastAttempt.at"))
        object.__setattr__(self, "channel", Channel(self.channel))
        object.__setattr__(self, "result", AttemptResult(self.result))
        _check_kind(self.number_kind, "PastAttempt.number_kind")

    def as_record(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "channel": self.channel.value,
            "contactPointId": self.contact_point_id,
            "numberKind": self.number_kind,
            "result": self.result.value,
            "priorConsent": self.prior_consent,
        }


# --- rules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapRule:
    """At most ``max_attempts`` counted attempts in any ``window`` (see module docstring).

    The rule applies to a new attempt on one of its ``channels`` to a number of one of its
    ``number_kinds`` (``None``: any), and counts past attempts on those channels and kinds.
    ``calendar_days`` adds the local-calendar-day reading when the window is whole days.
    """

    name: str
    channels: frozenset[Channel]
    max_attempts: int
    window: timedelta
    scope: CapScope = "person_debt"
    number_kinds: frozenset[NumberKind] | None = None
    honors_prior_consent_exclusion: bool = False
    excludes_unconnected: bool = False
    citation: str = ""
    calendar_days: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("CapRule.name must not be empty")
        object.__setattr__(self, "channels", _channels(self.channels, f"CapRule {self.name}"))
        _positive_int(self.max_attempts, f"CapRule {self.name}: max_attempts")
        if self.window <= timedelta(0):
            raise ValueError(f"CapRule {self.name}: window must be positive")
        if self.scope not in CAP_SCOPES:
            raise ValueError(f"CapRule {self.name}: scope must be one of {sorted(CAP_SCOPES)}")
        if self.number_kinds is not None:
            kinds = frozenset(self.number_kinds)
            if not kinds or not kinds <= NUMBER_KINDS:
                raise ValueError(
                    f"CapRule {self.name}: number_kinds must be a non-empty subset of"
                    f" {sorted(NUMBER_KINDS)} or None"
                )
            object.__setattr__(self, "number_kinds", kinds)

    @property
    def window_days(self) -> int | None:
        """The window as a number of local calendar days, when that reading applies."""
        if self.calendar_days and self.window % _DAY == timedelta(0):
            return self.window // _DAY
        return None

    def as_record(self) -> dict[str, Any]:
        return {
            "rule": self.name,
            "channels": sorted(c.value for c in self.channels),
            "maxAttempts": self.max_attempts,
            "windowSeconds": self.window.total_seconds(),
            "windowDays": self.window_days,
            "scope": self.scope,
            "numberKinds": None if self.number_kinds is None else sorted(self.number_kinds),
            "honorsPriorConsentExclusion": self.honors_prior_consent_exclusion,
            "excludesUnconnected": self.excludes_unconnected,
            "citation": self.citation,
        }


@dataclass(frozen=True, slots=True)
class PostConversationRule:
    """No call on the ``days`` local calendar days starting with a conversation's day."""

    name: str = "reg_f_post_conversation"
    channels: frozenset[Channel] = frozenset({Channel.VOICE})
    days: int = 7
    honors_prior_consent_exclusion: bool = True
    citation: str = "12 CFR 1006.14(b)(2)(ii), (b)(3)"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("PostConversationRule.name must not be empty")
        object.__setattr__(
            self, "channels", _channels(self.channels, f"PostConversationRule {self.name}")
        )
        _positive_int(self.days, f"PostConversationRule {self.name}: days")

    def as_record(self) -> dict[str, Any]:
        return {
            "rule": self.name,
            "channels": sorted(c.value for c in self.channels),
            "days": self.days,
            "honorsPriorConsentExclusion": self.honors_prior_consent_exclusion,
            "citation": self.citation,
        }


@dataclass(frozen=True, slots=True)
class BunchingRule:
    """Patterns that can rebut the call-frequency presumption; flagged, never blocking.

    The new attempt creates a pattern when, counting itself, ``unanswered_calls``
    unanswered calls to one number fall within ``unanswered_within`` of it, or
    ``calls_per_day`` calls fall on its local day (in any plausible zone).
    """

    channels: frozenset[Channel] = frozenset({Channel.VOICE})
    unanswered_calls: int = 2
    unanswered_within: timedelta = timedelta(minutes=5)
    calls_per_day: int = 7
    unanswered_results: frozenset[AttemptResult] = UNANSWERED_RESULTS
    citation: str = "12 CFR 1006.14(b)(2), official interpretation (bunched calls)"

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", _channels(self.channels, "BunchingRule"))
        _positive_int(self.unanswered_calls, "BunchingRule.unanswered_calls")
        _positive_int(self.calls_per_day, "BunchingRule.calls_per_day")
        if self.unanswered_within <= timedelta(0):
            raise ValueError("BunchingRule.unanswered_within must be positive")
        object.__setattr__(
            self, "unanswered_results", frozenset(AttemptResult(r) for r in self.unanswered_results)
        )

    @property
    def unanswered_flag(self) -> str:
        seconds = self.unanswered_within.total_seconds()
        span = f"{int(seconds // 60)}_min" if seconds % 60 == 0 else f"{seconds:g}_s"
        return f"bunching_{self.unanswered_calls}_unanswered_within_{span}"

    @property
    def daily_flag(self) -> str:
        return f"bunching_{self.calls_per_day}_calls_in_one_day"

    def as_record(self) -> dict[str, Any]:
        return {
            "channels": sorted(c.value for c in self.channels),
            "unansweredCalls": self.unanswered_calls,
            "unansweredWithinSeconds": self.unanswered_within.total_seconds(),
            "callsPerDay": self.calls_per_day,
            "unansweredResults": sorted(r.value for r in self.unanswered_results),
            "citation": self.citation,
        }


@dataclass(frozen=True, slots=True)
class FrequencyPolicy:
    """Every cap, the post-conversation rule and the bunching flags that apply together."""

    caps: tuple[CapRule, ...] = ()
    post_conversation: PostConversationRule | None = None
    bunching: BunchingRule | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "caps", tuple(self.caps))
        names = [c.name for c in self.caps]
        if self.post_conversation is not None:
            names.append(self.post_conversation.name)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            # Verdicts name failing rules; two rules with one name would be ambiguous.
            raise ValueError(f"FrequencyPolicy: duplicate rule names {duplicates}")

    def as_record(self) -> dict[str, Any]:
        return {
            "caps": [c.as_record() for c in self.caps],
            "postConversation": (
                self.post_conversation.as_record() if self.post_conversation else None
            ),
            "bunching": self.bunching.as_record() if self.bunching else None,
        }


def _joined(citations: Iterable[str]) -> str:
    return "; ".join(dict.fromkeys(c for c in citations if c))


def _merge_post_conversation(rules: Sequence[PostConversationRule]) -> PostConversationRule:
    """The stricter of several post-conversation rules: longest period, every channel."""
    if len(rules) == 1:
        return rules[0]
    return PostConversationRule(
        name="+".join(dict.fromkeys(r.name for r in rules)),
        channels=frozenset().union(*(r.channels for r in rules)),
        days=max(r.days for r in rules),
        honors_prior_consent_exclusion=all(r.honors_prior_consent_exclusion for r in rules),
        citation=_joined(r.citation for r in rules),
    )


def _merge_bunching(rules: Sequence[BunchingRule]) -> BunchingRule:
    """Flags from several bunching rules: flag whenever any of them would."""
    if len(rules) == 1:
        return rules[0]
    return BunchingRule(
        channels=frozenset().union(*(r.channels for r in rules)),
        unanswered_calls=min(r.unanswered_calls for r in rules),
        unanswered_within=max(r.unanswered_within for r in rules),
        calls_per_day=min(r.calls_per_day for r in rules),
        unanswered_results=frozenset().union(*(r.unanswered_results for r in rules)),
        citation=_joined(r.citation for r in rules),
    )


def combine(*policies: FrequencyPolicy) -> FrequencyPolicy:
    """One policy in which every rule of every given policy applies.

    Caps are concatenated (an overlay adds its stricter caps; identical rules are kept
    once; two different rules with one name raise ValueError). Several different
    post-conversation or bunching rules merge into the stricter combination (longest
    period / lowest thresholds, union of channels).
    """
    caps: dict[str, CapRule] = {}
    for policy in policies:
        for cap in policy.caps:
            known = caps.get(cap.name)
            if known is not None and known != cap:
                raise ValueError(f"combine: two different cap rules named {cap.name!r}")
            caps.setdefault(cap.name, cap)
    post = list(dict.fromkeys(p.post_conversation for p in policies if p.post_conversation))
    bunching = list(dict.fromkeys(p.bunching for p in policies if p.bunching))
    return FrequencyPolicy(
        caps=tuple(caps.values()),
        post_conversation=_merge_post_conversation(post) if post else None,
        bunching=_merge_bunching(bunching) if bunching else None,
    )


# --- presets ----------------------------------------------------------------------------

REG_F_CALL_FREQUENCY = CapRule(
    name="reg_f_call_frequency",
    channels=frozenset({Channel.VOICE}),
    max_attempts=7,
    window=timedelta(days=7),
    scope="person_debt",
    number_kinds=None,
    honors_prior_consent_exclusion=True,
    excludes_unconnected=True,
    citation="12 CFR 1006.14(b)(2)(i), (b)(3)",
)
REG_F_POST_CONVERSATION = PostConversationRule()
REG_F_BUNCHING = BunchingRule()
US_FEDERAL = FrequencyPolicy(
    caps=(REG_F_CALL_FREQUENCY,),
    post_conversation=REG_F_POST_CONVERSATION,
    bunching=REG_F_BUNCHING,
)

# Telephone communications in the Massachusetts sense: calls (and recorded audio), text
# messages -- WhatsApp included, see the module docstring.
_MA_CHANNELS = frozenset({Channel.VOICE, Channel.SMS, Channel.WHATSAPP})
MA_TELEPHONE_PERSONAL = CapRule(
    name="ma_telephone_personal",
    channels=_MA_CHANNELS,
    max_attempts=2,
    window=timedelta(days=7),
    scope="person_debt",
    number_kinds=frozenset({"personal"}),
    honors_prior_consent_exclusion=False,
    excludes_unconnected=False,
    citation="940 CMR 7.04(1)(f)",
)
MA_TELEPHONE_OTHER = CapRule(
    name="ma_telephone_other",
    channels=_MA_CHANNELS,
    max_attempts=2,
    window=timedelta(days=30),
    scope="person_debt",
    number_kinds=frozenset({"other"}),
    honors_prior_consent_exclusion=False,
    excludes_unconnected=False,
    citation="940 CMR 7.04(1)(f)",
)
US_MA_OVERLAY_CAPS = FrequencyPolicy(caps=(MA_TELEPHONE_PERSONAL, MA_TELEPHONE_OTHER))

BUNCHING_UNANSWERED = REG_F_BUNCHING.unanswered_flag  # "bunching_2_unanswered_within_5_min"
BUNCHING_DAILY = REG_F_BUNCHING.daily_flag  # "bunching_7_calls_in_one_day"


# --- local days -------------------------------------------------------------------------


def _local_date(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


@functools.lru_cache(maxsize=8192)
def _day_start(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which local day ``day`` begins in ``zone`` (for good)."""
    wall = datetime.combine(day, time(0))
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return first
    if first < second:
        # Midnight happens twice: the clock was set back across it. If it went back into
        # the previous day, the day only begins for good at the second midnight.
        before = _local_date(second - _MICROSECOND, zone)
        return second if before < day else first
    # Midnight is skipped (a spring-forward gap): the day begins at the transition, which
    # lies in (second, first] (PEP 495: fold=1 maps a gap time before it, fold=0 after).
    lo, hi = second, first
    while hi - lo > _MICROSECOND:
        mid = lo + (hi - lo) // 2
        if _local_date(mid, zone) >= day:
            hi = mid
        else:
            lo = mid
    return hi


def _days_end(instant: datetime, days: int, zones: Sequence[ZoneInfo]) -> datetime:
    """Start of local day ``date(instant) + days``, the latest over the plausible zones."""
    return max(_day_start(_local_date(instant, z) + timedelta(days=days), z) for z in zones)


# --- verdict ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapCount:
    """One cap rule's count for the new attempt."""

    rule: CapRule
    applies: bool
    counted: int
    allowed: bool
    next_allowed_utc: datetime | None
    counted_attempts: tuple[int, ...]  # indices into the evaluated history

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def max_attempts(self) -> int:
        return self.rule.max_attempts

    @property
    def window(self) -> timedelta:
        return self.rule.window

    @property
    def scope(self) -> CapScope:
        return self.rule.scope

    def as_record(self) -> dict[str, Any]:
        return {
            **self.rule.as_record(),
            "applies": self.applies,
            "counted": self.counted,
            "allowed": self.allowed,
            "nextAllowedUtc": _iso(self.next_allowed_utc),
            "countedAttempts": list(self.counted_attempts),
        }


@dataclass(frozen=True, slots=True)
class ConversationCheck:
    """The post-conversation rule for the new attempt: the longest-running block, if any."""

    rule: PostConversationRule
    applies: bool
    allowed: bool
    conversation_at: datetime | None
    blocked_until: datetime | None

    @property
    def name(self) -> str:
        return self.rule.name

    def as_record(self) -> dict[str, Any]:
        return {
            **self.rule.as_record(),
            "applies": self.applies,
            "allowed": self.allowed,
            "conversationAt": _iso(self.conversation_at),
            "blockedUntil": _iso(self.blocked_until),
        }


@dataclass(frozen=True, slots=True)
class AttemptEvidence:
    """A past attempt that some rule looked at, and what each rule made of it."""

    index: int
    attempt: PastAttempt
    counted_by: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]  # (rule name, why)
    blocks_until: datetime | None  # a conversation whose post-conversation period runs
    future_dated: bool

    def as_record(self) -> dict[str, Any]:
        return {
            "index": self.index,
            **self.attempt.as_record(),
            "countedBy": list(self.counted_by),
            "excluded": [{"rule": rule, "why": why} for rule, why in self.excluded],
            "blocksUntil": _iso(self.blocks_until),
            "futureDated": self.future_dated,
        }


@dataclass(frozen=True, slots=True)
class CapsVerdict:
    """Outcome of :func:`evaluate_caps`; ``as_record()`` is the stored evidence.

    ``next_allowed_utc`` is ``None`` when allowed; otherwise the earliest instant at which
    the same attempt passes every rule, given the same history.
    """

    now_utc: datetime
    channel: Channel
    contact_point_id: str | None
    number_kind: NumberKind | None
    prior_consent: bool
    allowed: bool
    next_allowed_utc: datetime | None
    reasons: tuple[str, ...]
    counts: tuple[CapCount, ...]
    post_conversation: ConversationCheck | None
    flags: tuple[str, ...]
    attempts: tuple[AttemptEvidence, ...]
    zones: tuple[str, ...]
    history_size: int
    bunching: BunchingRule | None = None
    notes: tuple[str, ...] = ()

    @property
    def reason(self) -> str | None:
        """The failing rule names, comma-joined (the gate's reason string)."""
        return ",".join(self.reasons) if self.reasons else None

    def cap(self, rule_name: str) -> CapCount:
        for c in self.counts:
            if c.rule.name == rule_name:
                return c
        raise KeyError(rule_name)

    def as_record(self) -> dict[str, Any]:
        return {
            "rule": RULE_NAME,
            "nowUtc": self.now_utc.isoformat(),
            "channel": self.channel.value,
            "contactPointId": self.contact_point_id,
            "numberKind": self.number_kind,
            "priorConsent": self.prior_consent,
            "zones": list(self.zones),
            "allowed": self.allowed,
            "nextAllowedUtc": _iso(self.next_allowed_utc),
            "reasons": list(self.reasons),
            "flags": list(self.flags),
            "caps": [c.as_record() for c in self.counts],
            "postConversation": (
                self.post_conversation.as_record() if self.post_conversation else None
            ),
            "bunching": self.bunching.as_record() if self.bunching else None,
            "attempts": [a.as_record() for a in self.attempts],
            "historySize": self.history_size,
            "notes": list(self.notes),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- evaluation -------------------------------------------------------------------------

_Indexed = Sequence[tuple[int, PastAttempt]]


def _kind_matches(kind: NumberKind | None, kinds: frozenset[NumberKind] | None) -> bool:
    return kinds is None or kind is None or kind in kinds


def _same_point(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


def _expiry(at: datetime, rule: CapRule, zones: Sequence[ZoneInfo]) -> datetime:
    """When an attempt at ``at`` stops counting against new attempts (module docstring)."""
    end = at + rule.window
    days = rule.window_days
    if days is not None:
        end = max(end, _days_end(at, days, zones))
    return end


def _exclusion(rule: CapRule, past: PastAttempt, contact_point_id: str | None) -> str | None:
    if rule.scope == "number" and not _same_point(past.contact_point_id, contact_point_id):
        return EXCLUDED_OTHER_CONTACT_POINT
    if rule.excludes_unconnected and past.result in UNCONNECTED_RESULTS:
        return EXCLUDED_DID_NOT_CONNECT
    if rule.honors_prior_consent_exclusion and past.prior_consent:
        return EXCLUDED_PRIOR_CONSENT
    return None


def _evaluate_cap(
    rule: CapRule,
    now: datetime,
    *,
    applies: bool,
    contact_point_id: str | None,
    history: _Indexed,
    zones: Sequence[ZoneInfo],
    counted_by: dict[int, list[str]],
    excluded: dict[int, list[tuple[str, str]]],
) -> CapCount:
    expiries: list[datetime] = []
    indices: list[int] = []
    for index, past in history:
        if past.result is AttemptResult.INBOUND_CONVERSATION:
            continue  # the person called us: not an attempt
        if past.channel not in rule.channels or not _kind_matches(
            past.number_kind, rule.number_kinds
        ):
            continue
        expiry = _expiry(past.at, rule, zones)
        if expiry <= now:
            continue  # outside the window: no longer relevant to this rule
        why = _exclusion(rule, past, contact_point_id)
        if why is not None:
            excluded.setdefault(index, []).append((rule.name, why))
            continue
        counted_by.setdefault(index, []).append(rule.name)
        expiries.append(expiry)
        indices.append(index)
    # counted + 1 <= max: the lookback (module docstring) plus the new attempt itself.
    counted = len(expiries)
    allowed = not applies or counted < rule.max_attempts
    next_allowed = None
    if not allowed:
        # Allowed again once count - max + 1 of the counted attempts have expired.
        next_allowed = sorted(expiries)[counted - rule.max_attempts]
    return CapCount(rule, applies, counted, allowed, next_allowed, tuple(indices))


def _evaluate_post_conversation(
    rule: PostConversationRule,
    now: datetime,
    *,
    applies: bool,
    history: _Indexed,
    zones: Sequence[ZoneInfo],
    blocks: dict[int, datetime],
) -> ConversationCheck:
    conversation_at: datetime | None = None
    blocked_until: datetime | None = None
    for index, past in history:
        if past.channel not in rule.channels or past.result not in CONVERSATION_RESULTS:
            continue
        # The conversation day is day 1: calls are blocked through local day D + days - 1.
        end = _days_end(past.at, rule.days, zones)
        if end <= now:
            continue
        blocks[index] = end
        if blocked_until is None or end > blocked_until:
            conversation_at, blocked_until = past.at, end
    allowed = not applies or blocked_until is None
    return ConversationCheck(rule, applies, allowed, conversation_at, blocked_until)


def _bunching_flags(
    rule: BunchingRule,
    now: datetime,
    *,
    contact_point_id: str | None,
    history: _Indexed,
    zones: Sequence[ZoneInfo],
) -> tuple[str, ...]:
    calls = [
        past
        for _, past in history
        if past.channel in rule.channels and past.result is not AttemptResult.INBOUND_CONVERSATION
    ]
    flags: list[str] = []
    unanswered = sum(
        1
        for past in calls
        if past.result in rule.unanswered_results
        and _same_point(past.contact_point_id, contact_point_id)
        and abs(past.at - now) <= rule.unanswered_within
    )
    if unanswered + 1 >= rule.unanswered_calls:
        flags.append(rule.unanswered_flag)
    for zone in zones:
        today = _local_date(now, zone)
        same_day = sum(1 for past in calls if _local_date(past.at, zone) == today)
        if same_day + 1 >= rule.calls_per_day:
            flags.append(rule.daily_flag)
            break
    return tuple(flags)


def evaluate_caps(
    now: datetime,
    channel: Channel,
    *,
    contact_point_id: str | None,
    number_kind: NumberKind | None,
    history: Sequence[PastAttempt],
    policy: FrequencyPolicy,
    zones: Sequence[ZoneInfo],
    prior_consent: bool = False,
) -> CapsVerdict:
    """May an attempt on ``channel`` to ``contact_point_id`` be placed at ``now``?

    ``history``: the person's past attempts about this debt, in any order. ``zones``: the
    borrower's plausible time zones (at least one). ``prior_consent``: the new attempt is
    placed with the person's direct prior consent given within the last 7 days.
    """
    now_utc = _aware_utc(now, "now")
    channel = Channel(channel)
    _check_kind(number_kind, "number_kind")
    zone_list = tuple(dict.fromkeys(zones))
    if not zone_list:
        raise ValueError("zones: at least one plausible time zone is required")
    indexed = sorted(enumerate(history), key=lambda item: (item[1].at, item[0]))

    counted_by: dict[int, list[str]] = {}
    excluded: dict[int, list[tuple[str, str]]] = {}
    blocks: dict[int, datetime] = {}
    counts = tuple(
        _evaluate_cap(
            rule,
            now_utc,
            applies=channel in rule.channels
            and _kind_matches(number_kind, rule.number_kinds)
            and not (prior_consent and rule.honors_prior_consent_exclusion),
            contact_point_id=contact_point_id,
            history=indexed,
            zones=zone_list,
            counted_by=counted_by,
            excluded=excluded,
        )
        for rule in policy.caps
    )
    post = policy.post_conversation
    conversation = (
        None
        if post is None
        else _evaluate_post_conversation(
            post,
            now_utc,
            applies=channel in post.channels
            and not (prior_consent and post.honors_prior_consent_exclusion),
            history=indexed,
            zones=zone_list,
            blocks=blocks,
        )
    )
    flags: tuple[str, ...] = ()
    if policy.bunching is not None and channel in policy.bunching.channels:
        flags = _bunching_flags(
            policy.bunching,
            now_utc,
            contact_point_id=contact_point_id,
            history=indexed,
            zones=zone_list,
        )

    failing: list[tuple[str, datetime | None]] = [
        (c.rule.name, c.next_allowed_utc) for c in counts if not c.allowed
    ]
    if conversation is not None and not conversation.allowed:
        failing.append((conversation.rule.name, conversation.blocked_until))
    reasons = tuple(name for name, _ in failing)
    next_allowed = None
    if failing:
        instants = [until for _, until in failing if until is not None]
        # Every rule's allowed instants form a ray [T, oo): the latest T is the answer.
        next_allowed = max(instants) if len(instants) == len(failing) else None

    evidence = tuple(
        AttemptEvidence(
            index=index,
            attempt=past,
            counted_by=tuple(counted_by.get(index, ())),
            excluded=tuple(excluded.get(index, ())),
            blocks_until=blocks.get(index),
            future_dated=past.at > now_utc,
        )
        for index, past in indexed
        if index in counted_by or index in excluded or index in blocks
    )
    future = sum(1 for _, past in indexed if past.at > now_utc)
    notes = (
        (f"{future} history attempt(s) dated after now: counted as inside every window",)
        if future
        else ()
    )
    return CapsVerdict(
        now_utc=now_utc,
        channel=channel,
        contact_point_id=contact_point_id,
        number_kind=number_kind,
        prior_consent=prior_consent,
        allowed=not failing,
        next_allowed_utc=next_allowed,
        reasons=reasons,
        counts=counts,
        post_conversation=conversation,
        flags=flags,
        attempts=evidence,
        zones=tuple(z.key for z in zone_list),
        history_size=len(indexed),
        bunching=policy.bunching,
        notes=notes,
    )


# --- gate adapter -----------------------------------------------------------------------


def to_rule_verdict(verdict: CapsVerdict, *, immediate: bool) -> RuleVerdict:
    """The gate's view of a caps verdict.

    An immediate attempt (a call placed now) that fails a cap is a BLOCK: it cannot wait.
    A message that can wait is a DEFER until the next allowed instant (a BLOCK when there
    is none: the gate drops a DEFER without ``defer_until``, which would let it through).
    The reason is the comma-joined failing rule names, e.g. ``"reg_f_call_frequency"``.
    """
    if verdict.allowed:
        return RuleVerdict(RULE_NAME, Outcome.ALLOW)
    if immediate or verdict.next_allowed_utc is None:
        return RuleVerdict(RULE_NAME, Outcome.BLOCK, verdict.reason)
    return RuleVerdict(
        RULE_NAME, Outcome.DEFER, verdict.reason, defer_until=verdict.next_allowed_utc
    )


def as_rule(
    *,
    history: Sequence[PastAttempt],
    policy: FrequencyPolicy,
    zones: Sequence[ZoneInfo],
    contact_point_id: str | None,
    number_kind: NumberKind | None,
    immediate: bool,
    prior_consent: bool = False,
) -> Rule:
    """A gate ``Rule`` evaluating the caps at ``facts.now`` for ``facts.channel``.

    The caller loads the history (under the per-person-and-debt lock: a cap check is
    read-then-write) and stores ``evaluate_caps(...).as_record()`` with the decision.
    """

    def frequency_caps(facts: AttemptFacts) -> RuleVerdict:
        verdict = evaluate_caps(
            facts.now,
            facts.channel,
            contact_point_id=contact_point_id,
            number_kind=number_kind,
            history=history,
            policy=policy,
            zones=zones,
            prior_consent=prior_consent,
        )
        return to_rule_verdict(verdict, immediate=immediate)

    return frequency_caps
