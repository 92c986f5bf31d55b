"""Property tests for the frequency caps (parley.compliance.caps) against a brute-force model.

The reference model below is simple on purpose and shares no logic with the module (only
its data classes): it reads each rule straight from the regulation's wording.

* A cap rule refuses a new attempt at t when, counting the attempt itself, more than
  ``max_attempts`` counted attempts would lie together in one period: a past attempt s
  shares a period with t when ``t - W < s`` (any span of length W holding both) or, for a
  window of whole days, when s and t fall within that many consecutive local calendar days
  in some plausible zone (``date(t) - date(s) < days``). Future-dated history always counts.
* The post-conversation rule refuses a call at t when some conversation c was on a local
  day such that t's local day is fewer than ``days`` days later, in some zone (or c > t).
* The next allowed instant is found by scanning the only instants where the model's
  answer can change (an attempt leaving a rolling window; a local day starting, found
  by bisecting the local date directly with zoneinfo), then checked by sampling: the
  model must refuse at random instants before it and one microsecond before it.

The simulation property runs a greedy caller that attempts at generated times, proceeds
only when allowed, and records a generated outcome; a brute-force checker then counts
the counted attempts in every W-long span and every run of consecutive local calendar
days in every plausible zone, and looks for a call inside any post-conversation period.
The checker always applies the calendar reading of a whole-day window (whatever the rule's
``calendar_days`` says). It is itself tested on hand-built violating sequences (it must
flag them), and on a rolling-only variant of Reg F, which does violate the calendar
reading in a DST fall-back week.

Random instants rarely land in the hour that a DST change adds to or removes from a local
day, so a second agreement test aims at it: ``now`` at or near the start of a DST day (or
of the day after), with attempts on the days whose periods end exactly there, in zones
whose clocks change at midnight among others (Havana skips midnight in March and has it
twice in November; Santiago changes at 24:00).
"""

from __future__ import annotations

import bisect
import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley.compliance.caps import (
    US_FEDERAL,
    US_MA_OVERLAY_CAPS,
    AttemptResult,
    CapRule,
    CapsVerdict,
    FrequencyPolicy,
    NumberKind,
    PastAttempt,
    PostConversationRule,
    combine,
    evaluate_caps,
)
from parley.domain.channels import Channel

VOICE, SMS, WHATSAPP, EMAIL = Channel.VOICE, Channel.SMS, Channel.WHATSAPP, Channel.EMAIL
R = AttemptResult
MICRO = timedelta(microseconds=1)

ZONES = {
    name: ZoneInfo(name)
    for name in (
        "America/New_York",
        "America/Los_Angeles",
        "Europe/London",
        "America/Santiago",  # DST changes at midnight
        "America/Havana",  # springs forward at midnight
        "Australia/Lord_Howe",  # 30-minute DST
        "Asia/Kolkata",  # no DST
    )
}
# DST changes in the pool's zones (2024-2025): histories are placed around them.
ANCHORS = tuple(
    datetime(y, m, d, 12, tzinfo=UTC)
    for y, m, d in (
        (2024, 3, 10),
        (2024, 11, 3),
        (2024, 3, 31),
        (2024, 10, 27),
        (2024, 4, 7),
        (2024, 9, 8),
        (2024, 10, 6),
        (2025, 3, 9),
        (2025, 11, 2),
        (2025, 4, 6),
    )
)

US_MA = combine(US_FEDERAL, US_MA_OVERLAY_CAPS)
PER_NUMBER = FrequencyPolicy(
    caps=(
        CapRule("per_number_36h", frozenset({VOICE, SMS}), 2, timedelta(hours=36), scope="number"),
        CapRule("texts_3_days", frozenset({SMS, WHATSAPP}), 3, timedelta(days=3)),
    ),
    post_conversation=PostConversationRule(name="post_conversation_2_days", days=2),
)
ROLLING_ONLY = FrequencyPolicy(
    caps=(
        CapRule(
            "rolling_only",
            frozenset({VOICE}),
            7,
            timedelta(days=7),
            honors_prior_consent_exclusion=True,
            excludes_unconnected=True,
            calendar_days=False,
        ),
    )
)
POLICIES = (US_FEDERAL, US_MA, PER_NUMBER)

# 12 CFR 1006.14(b)(3); not_dialed: click-to-call whose agent never answered (nothing dialed).
UNCONNECTED = {R.BUSY, R.NOT_IN_SERVICE, R.NETWORK_FAILURE, R.NOT_DIALED}
# Either side's conversation starts the post-conversation period (1006.14(b)(2)(i)(B)).
CONVERSATIONS = {R.CONVERSATION, R.INBOUND_CONVERSATION}


@dataclass(frozen=True)
class Attempt:
    """A new attempt (the reference model's view)."""

    channel: Channel
    point: str | None
    kind: NumberKind | None
    consent: bool


# --- reference model -------------------------------------------------------------------------


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


@functools.cache
def day_start(day: date, zone: ZoneInfo) -> datetime:
    """First instant whose local date is ``day``: bisection on the local date itself."""
    lo = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    hi = lo + timedelta(days=2)
    assert local_date(lo, zone) < day <= local_date(hi, zone)
    while hi - lo > MICRO:
        mid = lo + (hi - lo) // 2
        if local_date(mid, zone) >= day:
            hi = mid
        else:
            lo = mid
    return hi


def whole_days(rule: CapRule) -> int | None:
    seconds = rule.window.total_seconds()
    if rule.calendar_days and seconds % 86400 == 0:
        return int(seconds // 86400)
    return None


def subject_to(rule: CapRule, new: Attempt) -> bool:
    return (
        new.channel in rule.channels
        and (rule.number_kinds is None or new.kind is None or new.kind in rule.number_kinds)
        and not (new.consent and rule.honors_prior_consent_exclusion)
    )


def counts_toward(rule: CapRule, past: PastAttempt, new_point: str | None) -> bool:
    if past.result is R.INBOUND_CONVERSATION:  # the person called: not an attempt
        return False
    if past.channel not in rule.channels:
        return False
    kinds = rule.number_kinds
    if kinds is not None and past.number_kind is not None and past.number_kind not in kinds:
        return False
    other_number = (
        None not in (past.contact_point_id, new_point) and past.contact_point_id != new_point
    )
    if rule.scope == "number" and other_number:
        return False
    if rule.excludes_unconnected and past.result in UNCONNECTED:
        return False
    return not (rule.honors_prior_consent_exclusion and past.prior_consent)


def share_period(rule: CapRule, s: datetime, t: datetime, zones: Sequence[ZoneInfo]) -> bool:
    if s > t - rule.window:
        return True
    days = whole_days(rule)
    return days is not None and any(
        (local_date(t, z) - local_date(s, z)).days < days for z in zones
    )


def conversation_blocks(
    rule: PostConversationRule,
    t: datetime,
    history: Sequence[PastAttempt],
    zones: Sequence[ZoneInfo],
) -> bool:
    for past in history:
        if past.channel not in rule.channels or past.result not in CONVERSATIONS:
            continue
        if past.at > t:
            return True
        if any((local_date(t, z) - local_date(past.at, z)).days < rule.days for z in zones):
            return True
    return False


def ref_failing(
    t: datetime,
    new: Attempt,
    history: Sequence[PastAttempt],
    policy: FrequencyPolicy,
    zones: Sequence[ZoneInfo],
) -> tuple[str, ...]:
    failing = []
    for rule in policy.caps:
        if not subject_to(rule, new):
            continue
        n = sum(
            1
            for past in history
            if counts_toward(rule, past, new.point) and share_period(rule, past.at, t, zones)
        )
        if n + 1 > rule.max_attempts:
            failing.append(rule.name)
    post = policy.post_conversation
    if (
        post is not None
        and new.channel in post.channels
        and not (new.consent and post.honors_prior_consent_exclusion)
        and conversation_blocks(post, t, history, zones)
    ):
        failing.append(post.name)
    return tuple(failing)


def ref_next_allowed(
    now: datetime,
    new: Attempt,
    history: Sequence[PastAttempt],
    policy: FrequencyPolicy,
    zones: Sequence[ZoneInfo],
) -> datetime:
    """The earliest instant >= now the model allows (scan of the change points)."""
    candidates = {now}
    for past in history:
        for rule in policy.caps:
            candidates.add(past.at + rule.window)
            days = whole_days(rule)
            if days is not None:
                candidates.update(
                    day_start(local_date(past.at, z) + timedelta(days), z) for z in zones
                )
        if policy.post_conversation is not None:
            days = policy.post_conversation.days
            candidates.update(day_start(local_date(past.at, z) + timedelta(days), z) for z in zones)
    for candidate in sorted(c for c in candidates if c >= now):
        if not ref_failing(candidate, new, history, policy, zones):
            return candidate
    raise AssertionError("the model never allows the attempt")  # pragma: no cover


# --- generators ------------------------------------------------------------------------------

Scenario = tuple[datetime, Attempt, list[PastAttempt], FrequencyPolicy, tuple[ZoneInfo, ...]]

zone_sets = st.lists(st.sampled_from(sorted(ZONES)), min_size=1, max_size=2, unique=True).map(
    lambda names: tuple(ZONES[n] for n in names)
)
channels = st.sampled_from([VOICE, VOICE, VOICE, SMS, WHATSAPP, EMAIL])
points = st.sampled_from(["cell", "cell", "home", "work", None])
kinds: st.SearchStrategy[NumberKind | None] = st.sampled_from(
    ["personal", "personal", "other", None]
)
results = st.sampled_from([*R, R.NO_ANSWER, R.VOICEMAIL, R.CONVERSATION])


@st.composite
def past_attempts(
    draw: st.DrawFn, base: datetime, spread_minutes: int, channel: Channel
) -> PastAttempt:
    at = base + timedelta(minutes=draw(st.integers(-spread_minutes, 60 * 24)))
    at += timedelta(seconds=draw(st.sampled_from([0, 0, 1, 59])))
    return PastAttempt(
        at,
        draw(st.just(channel) | channels),
        draw(points),
        draw(kinds),
        draw(results),
        draw(st.integers(0, 9)) == 0,
    )


@st.composite
def new_attempts(draw: st.DrawFn, channel: st.SearchStrategy[Channel] = channels) -> Attempt:
    consent = draw(st.integers(0, 4)) == 0
    return Attempt(draw(channel), draw(points), draw(kinds), consent)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    anchor = draw(st.sampled_from(ANCHORS))
    now = anchor + timedelta(minutes=draw(st.integers(-3 * 24 * 60, 9 * 24 * 60)))
    # Dense histories on one main channel make every cap bind; sparse ones reach back
    # across the 30-day window and the DST change.
    spread = draw(st.sampled_from([24 * 60, 3 * 24 * 60, 8 * 24 * 60, 35 * 24 * 60]))
    main = draw(st.sampled_from([VOICE, VOICE, SMS]))
    least = draw(st.sampled_from([0, 0, 12]))
    history = draw(st.lists(past_attempts(now, spread, main), min_size=least, max_size=20))
    new = draw(new_attempts(st.just(main) | channels))
    return now, new, history, draw(st.sampled_from(POLICIES)), draw(zone_sets)


attributes = st.tuples(points, kinds, results, st.integers(0, 9).map(lambda n: n == 0))


@functools.cache
def irregular_days() -> tuple[tuple[str, date], ...]:
    """(zone, local date) pairs near the anchors whose day is not 24 h long (DST days)."""
    found = []
    for name, zone in sorted(ZONES.items()):
        for anchor in ANCHORS:
            for k in range(-2, 3):
                d = anchor.date() + timedelta(days=k)
                if day_start(d + timedelta(days=1), zone) - day_start(d, zone) != timedelta(1):
                    found.append((name, d))
    return tuple(sorted(set(found)))


def midnight_days() -> tuple[tuple[str, date], ...]:
    return tuple(d for d in irregular_days() if d[0] in ("America/Havana", "America/Santiago"))


@st.composite
def edge_scenarios(draw: st.DrawFn) -> Scenario:
    """``now`` close to the start of a DST day, history on the days whose periods end then.

    Random instants rarely fall in the hour a DST change adds or removes at a day
    boundary; these scenarios aim at it (a block or window ending at the start of the
    DST day, e.g. where midnight is skipped or happens twice).
    """
    # Zones whose clocks change at midnight twice as often: their day starts are the hard case.
    name, dst_day = draw(st.sampled_from(irregular_days()) | st.sampled_from(midnight_days()))
    day = dst_day + timedelta(days=draw(st.integers(0, 1)))  # its start or its end
    zone = ZONES[name]
    zones = (zone,) if draw(st.booleans()) else (zone, *draw(zone_sets))
    start = day_start(day, zone)
    # At the boundary, within the hour a DST change adds or removes, or further out.
    hour = 60 * 60 * 10**6
    offsets = st.sampled_from([-hour, -1, -1, 0, 1, hour // 2, hour - 1, hour])
    minutes = st.integers(-120, 180).map(lambda m: m * 60 * 10**6)
    now = start + timedelta(microseconds=draw(offsets | minutes))
    main = draw(st.sampled_from([VOICE, VOICE, SMS]))

    def on_day(back: int) -> datetime:
        first = day_start(day - timedelta(days=back), zone)
        last = day_start(day - timedelta(days=back - 1), zone)
        return first + (last - first) * draw(st.floats(0, 1, exclude_max=True))

    backs = st.sampled_from([1, 2, 3, 6, 7, 8, 29, 30, 31])
    history = [
        PastAttempt(on_day(draw(backs)), draw(st.just(main) | channels), *draw(attributes))
        for _ in range(draw(st.integers(0, 6)))
    ]
    # One call on a day whose period (2, 7 or 30 days) ends exactly at ``start``.
    ending = draw(st.sampled_from([2, 7, 30]))
    result = draw(st.sampled_from([R.CONVERSATION, R.NO_ANSWER]))
    history.append(PastAttempt(on_day(ending), VOICE, "cell", draw(kinds), result))
    new = draw(new_attempts(st.just(main)))
    return now, new, history, draw(st.sampled_from(POLICIES)), tuple(dict.fromkeys(zones))


# --- agreement with the model ----------------------------------------------------------------


def evaluate(
    now: datetime,
    new: Attempt,
    history: Sequence[PastAttempt],
    policy: FrequencyPolicy,
    zones: Sequence[ZoneInfo],
) -> CapsVerdict:
    return evaluate_caps(
        now,
        new.channel,
        contact_point_id=new.point,
        number_kind=new.kind,
        history=history,
        policy=policy,
        zones=zones,
        prior_consent=new.consent,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.randoms(use_true_random=False))
def test_agrees_with_the_reference_model(scenario: Scenario, rng: random.Random) -> None:
    assert_agrees(scenario, rng)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_scenarios(), st.randoms(use_true_random=False))
def test_agrees_with_the_reference_model_at_dst_day_boundaries(
    scenario: Scenario, rng: random.Random
) -> None:
    assert_agrees(scenario, rng)


def assert_agrees(scenario: Scenario, rng: random.Random) -> None:
    now, new, history, policy, zones = scenario
    verdict = evaluate(now, new, history, policy, zones)
    expected = ref_failing(now, new, history, policy, zones)
    assert verdict.reasons == expected
    assert verdict.allowed is (not expected)
    if verdict.allowed:
        assert verdict.next_allowed_utc is None
        return
    nxt = verdict.next_allowed_utc
    assert nxt is not None
    assert nxt == ref_next_allowed(now, new, history, policy, zones)
    # Minimal, checked without the change-point argument: refused just before and at
    # random earlier instants; the module agrees at both ends.
    assert nxt > now
    assert ref_failing(nxt - MICRO, new, history, policy, zones)
    span = (nxt - now) // MICRO
    for _ in range(5):
        probe = now + rng.randrange(span) * MICRO
        assert ref_failing(probe, new, history, policy, zones)
    assert evaluate(nxt, new, history, policy, zones).allowed
    assert not evaluate(nxt - MICRO, new, history, policy, zones).allowed


# --- simulation: a greedy caller never violates the rules -------------------------------------


def violations(
    placed: Sequence[PastAttempt], policy: FrequencyPolicy, zones: Sequence[ZoneInfo]
) -> list[str]:
    """Brute force: every W-long span, every run of local days, every conversation period.

    ``placed`` is in the order the attempts were placed; an attempt's ``prior_consent``
    both exempted it from the rules honouring consent and excludes it from their count.
    """
    found: list[str] = []
    for rule in policy.caps:
        members = [
            a
            for a in placed
            if subject_to(
                rule, Attempt(a.channel, a.contact_point_id, a.number_kind, a.prior_consent)
            )
            and counts_toward(rule, a, a.contact_point_id)
        ]
        groups: list[list[PastAttempt]] = [members]
        if rule.scope == "number":
            named = {a.contact_point_id for a in members} - {None}
            groups = [[a for a in members if a.contact_point_id in (p, None)] for p in named] or [
                members
            ]
        for group in groups:
            times = sorted(a.at for a in group)
            for i, start in enumerate(times):
                inside = bisect.bisect_left(times, start + rule.window) - i
                if inside > rule.max_attempts:
                    found.append(f"{rule.name}: {inside} in the span from {start}")
            # The regulation's reading, whatever the rule's calendar_days setting says.
            days = rule.window // timedelta(days=1)
            if rule.window % timedelta(days=1) or not times:
                continue
            for zone in zones:
                dates = sorted(local_date(t, zone) for t in times)
                for i, first in enumerate(dates):
                    inside = bisect.bisect_left(dates, first + timedelta(days)) - i
                    if inside > rule.max_attempts:
                        found.append(f"{rule.name}: {inside} in {days} days from {first} {zone}")
    post = policy.post_conversation
    if post is not None:
        for i, c in enumerate(placed):
            if c.channel not in post.channels or c.result is not R.CONVERSATION:
                continue
            for later in placed[i + 1 :]:
                if later.channel not in post.channels:
                    continue
                if later.prior_consent and post.honors_prior_consent_exclusion:
                    continue
                for zone in zones:
                    gap = (local_date(later.at, zone) - local_date(c.at, zone)).days
                    if gap < post.days:
                        found.append(f"{post.name}: call {later.at} after {c.at} ({zone})")
    return found


@dataclass(frozen=True)
class Step:
    gap: timedelta
    new: Attempt
    result: AttemptResult


steps = st.builds(
    Step,
    gap=(st.integers(0, 10) | st.integers(0, 20 * 60)).map(lambda m: timedelta(minutes=m)),
    new=new_attempts(),
    result=results,
)


def simulate(
    start: datetime, plan: Sequence[Step], policy: FrequencyPolicy, zones: Sequence[ZoneInfo]
) -> list[PastAttempt]:
    """A greedy caller: each planned attempt is placed iff the caps allow it at its time."""
    placed: list[PastAttempt] = []
    t = start
    for step in plan:
        t += step.gap
        if evaluate(t, step.new, placed, policy, zones).allowed:
            new = step.new
            placed.append(
                PastAttempt(t, new.channel, new.point, new.kind, step.result, new.consent)
            )
    return placed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(ANCHORS),
    st.integers(-6 * 24 * 60, 0),
    st.lists(steps, min_size=15, max_size=45),
    st.sampled_from(POLICIES),
    zone_sets,
)
def test_a_greedy_caller_never_violates_the_rules(
    anchor: datetime,
    offset: int,
    plan: list[Step],
    policy: FrequencyPolicy,
    zones: tuple[ZoneInfo, ...],
) -> None:
    placed = simulate(anchor + timedelta(minutes=offset), plan, policy, zones)
    assert violations(placed, policy, zones) == []


# --- the checks can fail -----------------------------------------------------------------------

NY = ZONES["America/New_York"]


def call(at: datetime, result: AttemptResult = R.NO_ANSWER, consent: bool = False) -> PastAttempt:
    return PastAttempt(at, VOICE, "cell", "personal", result, consent)


def test_the_checker_flags_eight_calls_in_seven_days() -> None:
    start = datetime(2024, 3, 4, 15, tzinfo=UTC)
    eight = [call(start + i * timedelta(hours=20)) for i in range(8)]
    assert any("reg_f_call_frequency" in v for v in violations(eight, US_FEDERAL, (NY,)))
    assert violations(eight[:7], US_FEDERAL, (NY,)) == []
    consented = [*eight[:7], call(eight[7].at, consent=True)]
    assert violations(consented, US_FEDERAL, (NY,)) == []


def test_the_checker_flags_a_call_inside_the_post_conversation_period() -> None:
    conversation = call(datetime(2024, 3, 5, 19, tzinfo=UTC), R.CONVERSATION)
    sixth_day = call(datetime(2024, 3, 12, 3, 59, tzinfo=UTC))  # Mon 11 March 23:59 EDT
    seventh_day = call(datetime(2024, 3, 12, 4, tzinfo=UTC))  # Tue 12 March 00:00 EDT
    found = violations([conversation, sixth_day], US_FEDERAL, (NY,))
    assert any("reg_f_post_conversation" in v for v in found)
    assert violations([conversation, seventh_day], US_FEDERAL, (NY,)) == []


def test_the_model_refuses_what_the_rules_refuse() -> None:
    start = datetime(2024, 3, 4, 15, tzinfo=UTC)
    history = [call(start + i * timedelta(hours=20)) for i in range(7)]
    new = Attempt(VOICE, "home", "personal", False)
    now = start + timedelta(days=6)
    assert ref_failing(now, new, history, US_FEDERAL, (NY,)) == ("reg_f_call_frequency",)
    assert ref_next_allowed(now, new, history, US_FEDERAL, (NY,)) == start + timedelta(days=7)
    assert ref_failing(now, new, history[:6], US_FEDERAL, (NY,)) == ()


def test_a_rolling_only_cap_violates_the_calendar_reading_in_a_fall_back_week() -> None:
    """Why the module also counts by local calendar days: the same greedy caller, driven by
    a purely rolling 7 x 24 h cap, places 8 calls in Sun 3 .. Sat 9 November 2024 (New York),
    and the checker catches it; with Reg F as implemented it does not happen."""
    start = datetime(2024, 11, 3, 4, 30, tzinfo=UTC)  # Sun 3 Nov 00:30 EDT
    plan = [Step(timedelta(0), Attempt(VOICE, "cell", "personal", False), R.NO_ANSWER)]
    plan += [
        Step(timedelta(hours=h), Attempt(VOICE, "cell", "personal", False), R.NO_ANSWER)
        for h in (36, 24, 24, 24, 24, 24)
    ]
    plan.append(Step(timedelta(hours=12, minutes=15), plan[0].new, R.NO_ANSWER))  # Sat 23:45 EST
    rolling = simulate(start, plan, ROLLING_ONLY, (NY,))
    assert len(rolling) == 8
    assert any("8 in 7 days" in v for v in violations(rolling, ROLLING_ONLY, (NY,)))
    assert len(simulate(start, plan, US_FEDERAL, (NY,))) == 7
