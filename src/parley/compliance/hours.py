"""The contact-hours rule: may the borrower be contacted now, and if not, when next?

Regulation F 1006.6(b)(1) (FDCPA 805(a)(1)): without knowledge to the contrary, a
convenient time is "after 8:00 a.m. and before 9:00 p.m. local time at the consumer's
location"; the consumer may name other inconvenient times, which must be honoured; when
the location is uncertain the time must be convenient in every plausible zone (see
:mod:`parley.compliance.zones`). Weekends and public holidays are not restricted by
Reg F but are common organisation or state policy, so both are configurable.

Reading of "after 8:00 and before 21:00"
---------------------------------------
By default a contact is allowed when ``start <= local time < end``: 08:00:00 is allowed,
21:00:00 is not. Justification: "before 9:00 p.m." is unambiguous (21:00:00 is out).
"After 8:00 a.m." read strictly excludes only the single instant 08:00:00.000000, and
under that reading there is no *earliest* allowed instant (the allowed set would be
open at its left end), so "defer until the next allowed moment" would have no answer;
the half-open reading gives one (08:00:00) and matches how the rule is universally
applied ("8 a.m. to 9 p.m."). The strict reading is available with
``ContactWindow(start_inclusive=False)``: the start instant itself is then excluded and
the earliest allowed instant is one microsecond (datetime's resolution) after it; to
keep a larger margin, configure ``start=time(8, 1)``.

Intervals
---------
Every local span (the window, per-weekday hours, holiday hours, inconvenient periods)
is a half-open wall-clock interval ``[start, end)`` on one local calendar day. When
``end <= start`` the span wraps: it covers ``[start, 24:00)`` and ``[00:00, end)`` of the
*same* calendar day (so ``(time(20), time(0))`` means "from 20:00 until midnight" and
``(time(22), time(6))`` means 00:00-06:00 and 22:00-24:00 on each listed day); equal start
and end cover the whole day. Weekdays are ``date.weekday()`` numbers (Monday = 0).

A local instant is allowed when its local date is

1. a public holiday (``observe_holidays`` and the date is in the ``holidays`` calendar of
   the given country/subdivision, observed days included): only ``holiday_hours``
   (default: none) apply - reason ``public_holiday``;
2. otherwise a weekday with an override: the override's hours apply, ``None`` meaning no
   contact that day - reason ``weekend`` on Saturday/Sunday, ``no_contact_day`` otherwise;
3. otherwise the window ``[start, end)`` applies - reason ``outside_contact_hours``;

and, within those hours, it is not inside any borrower-stated inconvenient period for
that weekday - reason ``borrower_inconvenient_time``.

DST
---
Local times are computed from aware UTC instants with :mod:`zoneinfo`; no fixed offsets
are added. Wall-clock times that do not exist (spring-forward gap) are never reached, so
the first allowed instant after a gap is the transition itself; wall-clock times that
occur twice (fall-back) are allowed or not on both occurrences alike. ``next_allowed_utc``
is computed exactly: the UTC line is cut into pieces of constant UTC offset (transitions
located by sampling every 6 hours and bisecting to the second - tzdata has no zone whose
offset changes twice within 6 hours; since 1970 the closest pair is about 7 days apart),
and within a piece local time is UTC plus the offset, so the first allowed wall-clock
time maps back to UTC by subtracting it.

The module is pure: no I/O (the holiday calendar comes from the ``holidays`` package's
in-memory data), no database.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from parley.compliance.gate import AttemptFacts, Outcome, Rule, RuleVerdict
from parley.compliance.zones import ZoneSet

__all__ = [
    "ALL_DAYS",
    "DEFAULT_HORIZON",
    "RULE_NAME",
    "WEEKDAYS",
    "WEEKEND",
    "ContactWindow",
    "DayHours",
    "HoursVerdict",
    "InconvenientPeriod",
    "Weekday",
    "ZoneFact",
    "as_rule",
    "evaluate_hours",
    "to_rule_verdict",
]

RULE_NAME = "contact_hours"
DEFAULT_HORIZON = timedelta(days=14)


class Weekday(IntEnum):
    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6


ALL_DAYS: frozenset[int] = frozenset(range(7))
WEEKDAYS: frozenset[int] = frozenset(range(5))
WEEKEND: frozenset[int] = frozenset({Weekday.SAT, Weekday.SUN})

# Reason codes, in the order they are reported.
PUBLIC_HOLIDAY = "public_holiday"
WEEKEND_REASON = "weekend"
NO_CONTACT_DAY = "no_contact_day"
OUTSIDE_HOURS = "outside_contact_hours"
INCONVENIENT = "borrower_inconvenient_time"
NO_ZONE = "no_plausible_zone"
NO_TIME = "no_allowed_time_within_horizon"
_REASON_ORDER = (PUBLIC_HOLIDAY, WEEKEND_REASON, NO_CONTACT_DAY, OUTSIDE_HOURS, INCONVENIENT)

_DAY_US = 86_400_000_000  # microseconds in a wall-clock day
_SAMPLE = timedelta(hours=6)  # offset-transition sampling step (see module docstring)
_SECOND = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_Span = tuple[int, int]  # [a, b) in microseconds since local midnight, 0 <= a < b <= DAY


def _tod(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def _wrap(a: int, b: int) -> list[_Span]:
    """The spans of a possibly wrapping interval [a, b) within one day."""
    if a < b:
        return [(a, b)]
    if a == b:
        return [(0, _DAY_US)]
    return [s for s in ((0, b), (a, _DAY_US)) if s[0] < s[1]]


def _subtract(spans: list[_Span], cut: list[_Span]) -> list[_Span]:
    out = spans
    for ca, cb in cut:
        nxt: list[_Span] = []
        for a, b in out:
            if cb <= a or ca >= b:
                nxt.append((a, b))
                continue
            if a < ca:
                nxt.append((a, ca))
            if cb < b:
                nxt.append((cb, b))
        out = nxt
    return sorted(out)


def _check_time(t: time, what: str) -> None:
    if t.tzinfo is not None:
        raise ValueError(f"{what} must be a local wall-clock time without tzinfo")


def _check_days(days: frozenset[int], what: str) -> None:
    if not days <= ALL_DAYS:
        raise ValueError(f"{what}: weekdays must be 0 (Monday) .. 6 (Sunday)")


@dataclass(frozen=True, slots=True)
class DayHours:
    """Allowed hours on one day: ``start <= local time < end`` (wrapping if end <= start)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        _check_time(self.start, "start")
        _check_time(self.end, "end")


@dataclass(frozen=True, slots=True)
class InconvenientPeriod:
    """A borrower-stated inconvenient period: no contact when ``start <= local < end``
    on the listed weekdays (wrapping if end <= start, within each listed day)."""

    weekdays: frozenset[int]
    start: time
    end: time
    label: str = ""

    def __post_init__(self) -> None:
        _check_time(self.start, "start")
        _check_time(self.end, "end")
        object.__setattr__(self, "weekdays", frozenset(self.weekdays))
        _check_days(self.weekdays, "InconvenientPeriod")

    @classmethod
    def not_before(cls, t: time, weekdays: frozenset[int] = ALL_DAYS) -> InconvenientPeriod:
        """ "Don't call me before 10": blocks [00:00, t)."""
        return cls(frozenset(weekdays), time(0), t, f"not before {t.isoformat()}")

    @classmethod
    def not_after(cls, t: time, weekdays: frozenset[int] = ALL_DAYS) -> InconvenientPeriod:
        """ "Not after 6 p.m.": blocks [t, 24:00)."""
        return cls(frozenset(weekdays), t, time(0), f"not after {t.isoformat()}")

    @classmethod
    def between(
        cls, start: time, end: time, weekdays: frozenset[int] = ALL_DAYS, label: str = ""
    ) -> InconvenientPeriod:
        """ "Never at work, 09:00-17:00 on weekdays": blocks [start, end)."""
        return cls(frozenset(weekdays), start, end, label or f"{start}-{end}")

    @classmethod
    def only_between(
        cls, start: time, end: time, weekdays: frozenset[int] = ALL_DAYS
    ) -> InconvenientPeriod:
        """ "Only call me 12:00-14:00": blocks everything outside [start, end)."""
        if start == end:
            raise ValueError("only_between needs start != end")
        return cls(frozenset(weekdays), end, start, f"only {start}-{end}")


@dataclass(frozen=True)
class ContactWindow:
    """Configuration of the contact-hours rule (defaults: US federal, Reg F).

    ``weekday_overrides`` maps a weekday (0 = Monday) to that day's hours, or to ``None``
    for no contact that day (e.g. ``{Weekday.SUN: None}``).
    """

    start: time = time(8)
    end: time = time(21)
    start_inclusive: bool = True
    weekday_overrides: Mapping[int, DayHours | None] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    inconvenient: tuple[InconvenientPeriod, ...] = ()
    observe_holidays: bool = False
    holiday_hours: DayHours | None = None

    def __post_init__(self) -> None:
        _check_time(self.start, "start")
        _check_time(self.end, "end")
        _check_days(frozenset(self.weekday_overrides), "weekday_overrides")
        object.__setattr__(
            self, "weekday_overrides", MappingProxyType(dict(self.weekday_overrides))
        )
        object.__setattr__(self, "inconvenient", tuple(self.inconvenient))

    def _base_spans(self, hours: DayHours) -> list[_Span]:
        a = _tod(hours.start) + (0 if self.start_inclusive else 1)
        return _wrap(a, _tod(hours.end))  # a == 24:00 (strict 23:59:59.999999) is handled

    def as_record(self) -> dict[str, Any]:
        def hours(h: DayHours | None) -> list[str] | None:
            return None if h is None else [h.start.isoformat(), h.end.isoformat()]

        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "startInclusive": self.start_inclusive,
            "weekdayOverrides": {
                str(int(day)): hours(h) for day, h in sorted(self.weekday_overrides.items())
            },
            "inconvenient": [
                {
                    "weekdays": sorted(p.weekdays),
                    "start": p.start.isoformat(),
                    "end": p.end.isoformat(),
                    "label": p.label,
                }
                for p in self.inconvenient
            ],
            "observeHolidays": self.observe_holidays,
            "holidayHours": hours(self.holiday_hours),
        }


@dataclass(frozen=True, slots=True)
class ZoneFact:
    """Evidence for one plausible zone at the evaluated instant."""

    zone: str
    local_time: datetime
    allowed: bool
    reason: str | None
    holiday: str | None = None

    def as_record(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "localTime": self.local_time.isoformat(),
            "allowed": self.allowed,
            "reason": self.reason,
            "holiday": self.holiday,
        }


@dataclass(frozen=True, slots=True)
class HoursVerdict:
    """Outcome of :func:`evaluate_hours`.

    ``next_allowed_utc`` is ``now`` when allowed, the earliest later instant allowed in
    every plausible zone at once, or ``None`` when there is none within the horizon.
    """

    now_utc: datetime
    allowed: bool
    next_allowed_utc: datetime | None
    reasons: tuple[str, ...]
    facts: tuple[ZoneFact, ...]
    zones: ZoneSet
    notes: tuple[str, ...] = ()

    @property
    def reason(self) -> str | None:
        return self.reasons[0] if self.reasons else None

    def as_record(self) -> dict[str, Any]:
        return {
            "rule": RULE_NAME,
            "nowUtc": self.now_utc.isoformat(),
            "allowed": self.allowed,
            "nextAllowedUtc": self.next_allowed_utc.isoformat() if self.next_allowed_utc else None,
            "reasons": list(self.reasons),
            "zones": self.zones.as_record(),
            "perZone": [f.as_record() for f in self.facts],
            "notes": list(self.notes),
        }


# --- holidays ------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _holiday_year(country: str, subdivision: str | None, year: int) -> Mapping[date, str]:
    calendar = holidays.country_holidays(country, subdiv=subdivision, years=year)
    return MappingProxyType({d: str(name) for d, name in calendar.items() if d.year == year})


class _Holidays:
    def __init__(self, country: str | None, subdivision: str | None, notes: list[str]) -> None:
        self._country = country.strip().upper() if country else None
        self._subdivision = subdivision.strip().upper() if subdivision else None
        self._notes = notes
        if self._country is None:
            notes.append("holidays: no country given; no public holidays applied")
            return
        try:
            _holiday_year(self._country, self._subdivision, 2000)
        except NotImplementedError:
            if self._subdivision is not None:
                notes.append(
                    f"holidays: subdivision {self._subdivision!r} unknown for {self._country};"
                    " national holidays only"
                )
                self._subdivision = None
                try:
                    _holiday_year(self._country, None, 2000)
                    return
                except NotImplementedError:
                    pass
            notes.append(f"holidays: no calendar for {self._country!r}; none applied")
            self._country = None

    def name(self, d: date) -> str | None:
        if self._country is None:
            return None
        return _holiday_year(self._country, self._subdivision, d.year).get(d)


# --- evaluation ----------------------------------------------------------------------


class _Calendar:
    """The allowed wall-clock spans of each local date, for one evaluation."""

    def __init__(self, window: ContactWindow, hols: _Holidays | None) -> None:
        self.window = window
        self.hols = hols
        self._memo: dict[date, list[_Span]] = {}
        self._inconvenient = [
            (frozenset(p.weekdays), _wrap(_tod(p.start), _tod(p.end))) for p in window.inconvenient
        ]
        self._default = DayHours(window.start, window.end)

    def holiday(self, d: date) -> str | None:
        return self.hols.name(d) if self.hols is not None else None

    def _base(self, d: date) -> tuple[DayHours | None, str]:
        if self.holiday(d) is not None:
            return self.window.holiday_hours, PUBLIC_HOLIDAY
        wd = d.weekday()
        if wd in self.window.weekday_overrides:
            hours = self.window.weekday_overrides[wd]
            if hours is None:
                return None, WEEKEND_REASON if wd in WEEKEND else NO_CONTACT_DAY
            return hours, OUTSIDE_HOURS
        return self._default, OUTSIDE_HOURS

    def spans(self, d: date) -> list[_Span]:
        found = self._memo.get(d)
        if found is None:
            hours, _ = self._base(d)
            base = [] if hours is None else self.window._base_spans(hours)
            wd = d.weekday()
            for days, cut in self._inconvenient:
                if wd in days:
                    base = _subtract(base, cut)
            found = self._memo[d] = base
        return found

    def allows(self, local: datetime) -> bool:
        tod = _tod(local.time())
        return any(a <= tod < b for a, b in self.spans(local.date()))

    def reason(self, local: datetime) -> str | None:
        """Why a local time is not allowed (None when it is)."""
        if self.allows(local):
            return None
        hours, why = self._base(local.date())
        if hours is None:
            return why
        tod = _tod(local.time())
        if not any(a <= tod < b for a, b in self.window._base_spans(hours)):
            return why
        return INCONVENIENT

    def first_allowed_wall(self, wall_from: datetime, wall_limit: datetime) -> datetime | None:
        """Earliest naive wall-clock time >= wall_from (and <= wall_limit) that is allowed."""
        d = wall_from.date()
        tod = _tod(wall_from.time())
        midnight = datetime.combine(d, time(0))
        while midnight <= wall_limit:
            for a, b in self.spans(d):
                if b > tod:
                    found = midnight + timedelta(microseconds=max(a, tod))
                    return found if found <= wall_limit else None
            d += timedelta(days=1)
            midnight = datetime.combine(d, time(0))
            tod = 0
        return None


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    """ZoneInfo keeps only a few zones strongly cached; keep the ones we use loaded."""
    return ZoneInfo(name)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    off = instant.astimezone(zone).utcoffset()
    assert off is not None
    return off


def _first_transition(
    zone: ZoneInfo, start: datetime, end: datetime, off: timedelta
) -> datetime | None:
    """First instant in (start, end] whose UTC offset differs from ``off`` (None if none).

    Samples every ``_SAMPLE`` and bisects to the second (tz transitions are whole seconds).
    """
    prev = start
    while prev < end:
        nxt = min(prev + _SAMPLE, end)
        if _offset(zone, nxt) != off:
            lo = (prev - _EPOCH) // _SECOND
            hi = -((_EPOCH - nxt) // _SECOND)  # ceil
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(zone, _EPOCH + mid * _SECOND) == off:
                    lo = mid
                else:
                    hi = mid
            return _EPOCH + hi * _SECOND
        prev = nxt
    return None


def _zone_next(cal: _Calendar, zone: ZoneInfo, start: datetime, limit: datetime) -> datetime | None:
    """Earliest instant in [start, limit] allowed in one zone (None if none)."""
    cur = start
    while cur <= limit:
        off = _offset(zone, cur)
        wall_from = (cur + off).replace(tzinfo=None)
        wall = cal.first_allowed_wall(wall_from, (limit + off).replace(tzinfo=None))
        candidate = limit if wall is None else (wall - off).replace(tzinfo=UTC)
        transition = _first_transition(zone, cur, candidate, off)
        if transition is None:
            return None if wall is None else candidate
        # The offset changes before the candidate: nothing was allowed in [cur, transition)
        # under the old offset; continue from the transition with the new one.
        cur = transition
    return None


def _next_allowed(
    cal: _Calendar, zones: Sequence[ZoneInfo], now: datetime, horizon: timedelta
) -> datetime | None:
    """Earliest instant >= now allowed in every zone, by chasing the per-zone answers.

    The answer T is allowed in each zone, so T >= next_z(t) for each zone z and each
    t <= T; moving t to max_z next_z(t) therefore never passes T, and t stops moving
    exactly when it is allowed everywhere.
    """
    limit = now + horizon
    t = now
    while True:
        latest = t
        for zone in zones:
            found = _zone_next(cal, zone, t, limit)
            if found is None:
                return None
            latest = max(latest, found)
        if latest == t:
            return t
        t = latest


def evaluate_hours(
    now_utc: datetime,
    zones: ZoneSet,
    window: ContactWindow,
    *,
    country: str | None,
    subdivision: str | None,
    horizon: timedelta = DEFAULT_HORIZON,
) -> HoursVerdict:
    """Is ``now_utc`` allowed in every plausible zone, and if not, when next?

    ``country``/``subdivision`` (ISO codes, as the ``holidays`` package spells them) pick
    the public-holiday calendar, applied to the local date in each zone when
    ``window.observe_holidays`` is set. ``now_utc`` must be timezone-aware.
    """
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ValueError("now_utc must be timezone-aware")
    now = now_utc.astimezone(UTC)
    notes: list[str] = []
    hols = _Holidays(country, subdivision, notes) if window.observe_holidays else None
    cal = _Calendar(window, hols)
    if not zones.zones:
        return HoursVerdict(now, False, None, (NO_ZONE,), (), zones, tuple(notes))

    infos = [_zone(name) for name in sorted(zones.zones)]
    facts: list[ZoneFact] = []
    for info in infos:
        local = now.astimezone(info)
        why = cal.reason(local)
        facts.append(ZoneFact(info.key, local, why is None, why, cal.holiday(local.date())))
    reasons = tuple(r for r in _REASON_ORDER if any(f.reason == r for f in facts))
    if not reasons:
        return HoursVerdict(now, True, now, (), tuple(facts), zones, tuple(notes))
    nxt = _next_allowed(cal, infos, now, horizon)
    return HoursVerdict(now, False, nxt, reasons, tuple(facts), zones, tuple(notes))


# --- gate adapter --------------------------------------------------------------------


def to_rule_verdict(verdict: HoursVerdict) -> RuleVerdict:
    """The gate's view: allow, defer until the next allowed instant, or block.

    With no allowed instant within the horizon (or no plausible zone) the verdict is a
    BLOCK: the gate drops a DEFER that has no ``defer_until``, which would let it through.
    """
    if verdict.allowed:
        return RuleVerdict(RULE_NAME, Outcome.ALLOW)
    if verdict.next_allowed_utc is None:
        reason = NO_ZONE if NO_ZONE in verdict.reasons else NO_TIME
        return RuleVerdict(RULE_NAME, Outcome.BLOCK, reason)
    return RuleVerdict(
        RULE_NAME, Outcome.DEFER, verdict.reason, defer_until=verdict.next_allowed_utc
    )


def as_rule(
    zones: ZoneSet,
    window: ContactWindow,
    *,
    country: str | None,
    subdivision: str | None,
    horizon: timedelta = DEFAULT_HORIZON,
) -> Rule:
    """A gate ``Rule`` for one borrower's zones and window, evaluated at ``facts.now``.

    ``AttemptFacts`` carries no location, so the caller resolves the borrower's zones
    (:func:`parley.compliance.zones.plausible_zones`) and window first and passes the rule
    to ``gate.evaluate(facts, (*DEFAULT_RULES, rule))``. Store
    ``evaluate_hours(...).as_record()`` with the decision for the per-zone evidence.
    """

    def contact_hours(facts: AttemptFacts) -> RuleVerdict:
        verdict = evaluate_hours(
            facts.now, zones, window, country=country, subdivision=subdivision, horizon=horizon
        )
        return to_rule_verdict(verdict)

    return contact_hours
