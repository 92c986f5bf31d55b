"""Frequency caps (parley.compliance.caps): one example test per rule and edge.

Instants are written in UTC with the borrower's local time alongside; 2024 DST changes
in America/New_York: 10 March (02:00 EST -> 03:00 EDT) and 3 November (02:00 EDT ->
01:00 EST). The property tests live in test_caps_properties.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from parley.compliance import gate
from parley.compliance.caps import (
    BUNCHING_DAILY,
    BUNCHING_UNANSWERED,
    MA_TELEPHONE_OTHER,
    MA_TELEPHONE_PERSONAL,
    REG_F_CALL_FREQUENCY,
    REG_F_POST_CONVERSATION,
    UNCONNECTED_RESULTS,
    US_FEDERAL,
    US_MA_OVERLAY_CAPS,
    AttemptResult,
    BunchingRule,
    CapRule,
    CapsVerdict,
    FrequencyPolicy,
    NumberKind,
    PastAttempt,
    PostConversationRule,
    as_rule,
    combine,
    evaluate_caps,
    to_rule_verdict,
)
from parley.compliance.gate import AttemptFacts, Outcome
from parley.domain.channels import Channel

VOICE, SMS, WHATSAPP, EMAIL = Channel.VOICE, Channel.SMS, Channel.WHATSAPP, Channel.EMAIL
R = AttemptResult
NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")
HAVANA = ZoneInfo("America/Havana")
US_MA = combine(US_FEDERAL, US_MA_OVERLAY_CAPS)
H = timedelta(hours=1)
D = timedelta(days=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def call(
    at: datetime,
    result: AttemptResult = R.NO_ANSWER,
    *,
    point: str | None = "cell",
    kind: NumberKind | None = "personal",
    consent: bool = False,
    channel: Channel = VOICE,
) -> PastAttempt:
    return PastAttempt(at, channel, point, kind, result, consent)


def text(at: datetime, *, point: str = "cell", kind: NumberKind = "personal") -> PastAttempt:
    return PastAttempt(at, SMS, point, kind, R.DELIVERED)


def check(
    now: datetime,
    history: list[PastAttempt],
    *,
    channel: Channel = VOICE,
    policy: FrequencyPolicy = US_FEDERAL,
    zones: tuple[ZoneInfo, ...] = (NY,),
    point: str | None = "cell",
    kind: NumberKind | None = "personal",
    consent: bool = False,
) -> CapsVerdict:
    return evaluate_caps(
        now,
        channel,
        contact_point_id=point,
        number_kind=kind,
        history=history,
        policy=policy,
        zones=zones,
        prior_consent=consent,
    )


# Monday 4 March 2024, 10:00 EST; one call every 20 hours after that.
START = utc(2024, 3, 4, 15)


def calls_every_20h(n: int, result: AttemptResult = R.NO_ANSWER, **kw: object) -> list[PastAttempt]:
    return [call(START + i * 20 * H, result, **kw) for i in range(n)]  # type: ignore[arg-type]


# --- Reg F: 7 calls in 7 days -------------------------------------------------------------


def test_the_seventh_call_in_seven_days_is_allowed() -> None:
    history = calls_every_20h(6)
    verdict = check(START + 5 * D, history)
    assert verdict.allowed
    assert verdict.next_allowed_utc is None
    assert verdict.reasons == ()
    assert verdict.cap("reg_f_call_frequency").counted == 6


def test_the_eighth_call_in_seven_days_is_refused_and_names_reg_f() -> None:
    history = calls_every_20h(7)
    now = START + 6 * D
    verdict = check(now, history)
    assert not verdict.allowed
    assert verdict.reasons == ("reg_f_call_frequency",)
    assert verdict.reason == "reg_f_call_frequency"
    count = verdict.cap("reg_f_call_frequency")
    assert (count.counted, count.rule.max_attempts, count.rule.window) == (7, 7, 7 * D)
    assert count.rule.scope == "person_debt"
    # The oldest call (Mon 4 March 10:00 EST) leaves the 7-day window at Mon 11 March
    # 10:00 EDT = 14:00 UTC, and its local day ended long before.
    assert verdict.next_allowed_utc == START + 7 * D

    immediate = to_rule_verdict(verdict, immediate=True)
    assert (immediate.rule, immediate.outcome) == ("frequency_caps", Outcome.BLOCK)
    assert immediate.reason == "reg_f_call_frequency"
    later = to_rule_verdict(verdict, immediate=False)
    assert later.outcome is Outcome.DEFER
    assert later.reason == "reg_f_call_frequency"
    assert later.defer_until == START + 7 * D


def test_the_window_is_rolling_half_open() -> None:
    history = calls_every_20h(7)
    boundary = START + 7 * D
    assert not check(boundary - timedelta(microseconds=1), history).allowed
    after = check(boundary, history)
    assert after.allowed
    assert after.cap("reg_f_call_frequency").counted == 6
    assert to_rule_verdict(after, immediate=True).outcome is Outcome.ALLOW


@pytest.mark.parametrize("result", sorted(UNCONNECTED_RESULTS))
def test_calls_that_do_not_connect_are_not_counted(result: AttemptResult) -> None:
    history = [*calls_every_20h(6), call(START + 5 * D, result)]
    verdict = check(START + 6 * D, history)
    assert verdict.allowed
    assert verdict.cap("reg_f_call_frequency").counted == 6
    evidence = {e.index: e for e in verdict.attempts}
    assert evidence[6].excluded == (("reg_f_call_frequency", "did_not_connect"),)
    assert evidence[6].counted_by == ()


def test_the_unconnected_set_is_busy_not_in_service_network_failure_not_dialed() -> None:
    assert {R.BUSY, R.NOT_IN_SERVICE, R.NETWORK_FAILURE, R.NOT_DIALED} == UNCONNECTED_RESULTS


def test_calls_placed_with_prior_consent_are_not_counted() -> None:
    history = [*calls_every_20h(6), call(START + 5 * D, R.CONVERSATION, consent=True)]
    verdict = check(START + 6 * D, history, policy=FrequencyPolicy(caps=(REG_F_CALL_FREQUENCY,)))
    assert verdict.allowed
    assert verdict.cap("reg_f_call_frequency").counted == 6
    assert ("reg_f_call_frequency", "prior_consent") in verdict.attempts[-1].excluded


@pytest.mark.parametrize(
    "result", [R.NO_ANSWER, R.VOICEMAIL, R.LEFT_MESSAGE, R.PENDING, R.CONVERSATION]
)
def test_unanswered_voicemail_pending_and_conversations_count(result: AttemptResult) -> None:
    policy = FrequencyPolicy(caps=(REG_F_CALL_FREQUENCY,))
    history = [*calls_every_20h(6), call(START + 5 * D, result)]
    verdict = check(START + 6 * D, history, policy=policy)
    assert not verdict.allowed
    assert verdict.reasons == ("reg_f_call_frequency",)
    assert verdict.cap("reg_f_call_frequency").counted == 7


def test_calls_to_different_numbers_of_the_person_count_together() -> None:
    points = ["cell", "home", "work", "cell", "home", "work", "other-cell"]
    history = [
        call(START + i * 20 * H, point=p, kind="other" if p == "work" else "personal")
        for i, p in enumerate(points)
    ]
    verdict = check(START + 6 * D, history, point="new-number")
    assert verdict.reasons == ("reg_f_call_frequency",)
    assert verdict.cap("reg_f_call_frequency").counted == 7


def test_texts_and_emails_are_not_reg_f_call_attempts() -> None:
    history = calls_every_20h(7)
    assert check(START + 6 * D, history, channel=SMS).allowed
    assert check(START + 6 * D, history, channel=EMAIL).allowed
    texts = [text(START + i * H) for i in range(10)]
    assert check(START + D, texts).allowed  # a call after ten texts


def test_a_new_call_with_prior_consent_is_not_subject_to_reg_f() -> None:
    history = calls_every_20h(7)
    verdict = check(START + 6 * D, history, consent=True)
    assert verdict.allowed
    count = verdict.cap("reg_f_call_frequency")
    assert not count.applies
    assert count.counted == 7  # still reported as evidence


def test_future_dated_history_is_counted() -> None:
    now = START + 6 * D
    history = [*calls_every_20h(6), call(now + 3 * H)]
    verdict = check(now, history)
    assert verdict.reasons == ("reg_f_call_frequency",)
    assert verdict.attempts[-1].future_dated
    assert verdict.notes
    # Allowed once the oldest call leaves the window (the future one still counts then).
    assert verdict.next_allowed_utc == START + 7 * D


def test_a_fall_back_week_is_one_hour_longer_than_seven_times_24_hours() -> None:
    """Sun 3 Nov .. Sat 9 Nov 2024 in New York lasts 169 h: a rolling 168 h lookback alone
    would allow an 8th call in those 7 calendar days; the calendar reading refuses it."""
    first = utc(2024, 11, 3, 4, 30)  # Sun 3 Nov 00:30 EDT
    history = [call(first)] + [call(utc(2024, 11, d, 17)) for d in range(4, 10)]  # 12:00 EST
    now = utc(2024, 11, 10, 4, 45)  # Sat 9 Nov 23:45 EST: 168 h 15 min after the first call
    verdict = check(now, history)
    assert verdict.reasons == ("reg_f_call_frequency",)
    assert verdict.next_allowed_utc == utc(2024, 11, 10, 5)  # Sun 10 Nov 00:00 EST

    rolling_only = CapRule(
        "rolling_only", frozenset({VOICE}), 7, 7 * D, calendar_days=False, citation="test"
    )
    assert check(now, history, policy=FrequencyPolicy(caps=(rolling_only,))).allowed


# --- Reg F: post-conversation period ----------------------------------------------------


def test_a_conversation_blocks_calls_through_the_sixth_day_after_across_spring_dst() -> None:
    conversation = call(utc(2024, 3, 5, 19), R.CONVERSATION)  # Tue 5 March 14:00 EST
    history = [conversation]
    same_day = check(utc(2024, 3, 5, 23), history)  # 18:00 EST, day 1
    assert same_day.reasons == ("reg_f_post_conversation",)
    end = utc(2024, 3, 12, 4)  # Tue 12 March 00:00 EDT (DST began on 10 March)
    assert same_day.next_allowed_utc == end
    assert check(end - timedelta(microseconds=1), history).reasons == ("reg_f_post_conversation",)
    assert check(end, history).allowed
    check_ = same_day.post_conversation
    assert check_ is not None
    assert check_.conversation_at == conversation.at
    assert check_.blocked_until == end
    assert same_day.attempts[0].blocks_until == end
    assert to_rule_verdict(same_day, immediate=True).reason == "reg_f_post_conversation"


def test_a_conversation_block_across_fall_back_and_two_plausible_zones() -> None:
    history = [call(utc(2024, 10, 30, 19), R.CONVERSATION)]  # Wed 30 Oct 15:00 EDT, 12:00 PDT
    ny_only = check(utc(2024, 11, 5, 12), history)
    assert ny_only.next_allowed_utc == utc(2024, 11, 6, 5)  # Wed 6 Nov 00:00 EST
    both = check(utc(2024, 11, 5, 12), history, zones=(NY, LA))
    assert both.next_allowed_utc == utc(2024, 11, 6, 8)  # Wed 6 Nov 00:00 PST: the latest
    # 02:59 EST on 6 Nov is allowed in New York but still 5 Nov in Los Angeles.
    assert check(utc(2024, 11, 6, 7, 59), history).allowed
    assert not check(utc(2024, 11, 6, 7, 59), history, zones=(NY, LA)).allowed
    assert check(utc(2024, 11, 6, 8), history, zones=(LA, NY)).allowed


def test_the_conversation_day_is_counted_in_each_zone_the_latest_end_wins() -> None:
    # Tue 5 March 01:00 EST is still Mon 4 March 22:00 PST: day 1 differs per zone.
    history = [call(utc(2024, 3, 5, 6), R.CONVERSATION)]
    verdict = check(utc(2024, 3, 8, 12), history, zones=(LA, NY))
    assert verdict.next_allowed_utc == utc(2024, 3, 12, 4)  # New York's 12 March, not LA's 11


def test_the_post_conversation_period_blocks_calls_only() -> None:
    history = [call(utc(2024, 3, 5, 19), R.CONVERSATION)]
    assert check(utc(2024, 3, 6, 15), history, channel=SMS).allowed
    assert check(utc(2024, 3, 6, 15), history, channel=EMAIL).allowed
    assert check(utc(2024, 3, 6, 15), history, consent=True).allowed  # callback requested
    texted = [PastAttempt(utc(2024, 3, 5, 19), SMS, "cell", "personal", R.CONVERSATION)]
    assert check(utc(2024, 3, 6, 15), texted).allowed  # not a telephone conversation


def test_a_future_dated_conversation_blocks_now() -> None:
    history = [call(utc(2024, 3, 7, 15), R.CONVERSATION)]
    verdict = check(utc(2024, 3, 6, 15), history)
    assert verdict.reasons == ("reg_f_post_conversation",)
    assert verdict.next_allowed_utc == utc(2024, 3, 14, 4)


def test_day_start_where_midnight_is_skipped() -> None:
    # Havana springs forward at midnight (00:00 CST -> 01:00 CDT on Sun 10 March 2024):
    # 9 March's conversation blocks through 15 March and 16 March starts at 00:00 CDT,
    # while the block of a 3 March conversation ends when 10 March starts: at 01:00 CDT.
    history = [call(utc(2024, 3, 3, 17), R.CONVERSATION)]
    verdict = check(utc(2024, 3, 4, 17), history, zones=(HAVANA,))
    assert verdict.next_allowed_utc == utc(2024, 3, 10, 5)
    assert verdict.next_allowed_utc.astimezone(HAVANA).isoformat() == "2024-03-10T01:00:00-04:00"
    assert not check(utc(2024, 3, 10, 4, 59, 59), history, zones=(HAVANA,)).allowed


def test_day_start_where_midnight_happens_twice() -> None:
    # Havana falls back at 01:00 CDT -> 00:00 CST on Sun 3 November 2024: 00:00-01:00 is
    # lived twice, both times on 3 November, so the day starts at the first 00:00 (CDT).
    history = [call(utc(2024, 10, 27, 16), R.CONVERSATION)]  # Sun 27 Oct 12:00 CDT
    verdict = check(utc(2024, 11, 2, 12), history, zones=(HAVANA,))
    assert verdict.next_allowed_utc == utc(2024, 11, 3, 4)
    assert verdict.next_allowed_utc.astimezone(HAVANA).isoformat() == "2024-11-03T00:00:00-04:00"
    assert check(utc(2024, 11, 3, 4, 30), history, zones=(HAVANA,)).allowed


def test_the_tightest_failing_rule_sets_next_allowed() -> None:
    history = [*calls_every_20h(6), call(START + 5 * D, R.CONVERSATION)]
    verdict = check(START + 5 * D + H, history)
    assert verdict.reasons == ("reg_f_call_frequency", "reg_f_post_conversation")
    assert verdict.reason == "reg_f_call_frequency,reg_f_post_conversation"
    # Cap: the first call leaves at 11 March 15:00 UTC; the conversation (Sat 9 March,
    # 10:00 EST) blocks until Sat 16 March 00:00 EDT = 04:00 UTC: the later one wins.
    assert verdict.next_allowed_utc == utc(2024, 3, 16, 4)


# --- Massachusetts -------------------------------------------------------------------------


def test_ma_the_third_text_in_seven_days_to_a_personal_number_is_refused() -> None:
    history = [text(START), text(START + 2 * D)]
    verdict = check(START + 3 * D, history, channel=SMS, policy=US_MA)
    assert verdict.reasons == ("ma_telephone_personal",)
    assert verdict.next_allowed_utc == START + 7 * D
    assert check(START + 7 * D, history, channel=SMS, policy=US_MA).allowed
    assert check(START + 3 * D, history, channel=SMS, policy=US_FEDERAL).allowed


@pytest.mark.parametrize("channel", [VOICE, SMS, WHATSAPP])
def test_ma_calls_texts_and_whatsapp_share_one_budget(channel: Channel) -> None:
    history = [
        call(START),
        PastAttempt(START + D, WHATSAPP, "cell", "personal", R.SENT),
    ]
    verdict = check(START + 2 * D, history, channel=channel, policy=US_MA)
    assert verdict.reasons == ("ma_telephone_personal",)
    assert verdict.cap("ma_telephone_personal").counted == 2


def test_ma_counts_unconnected_and_consented_calls_and_ignores_email() -> None:
    history = [call(START, R.BUSY), call(START + H, consent=True)]
    assert check(START + D, history, policy=US_MA).reasons == ("ma_telephone_personal",)
    emails = [PastAttempt(START + i * H, EMAIL, "mail", None, R.DELIVERED) for i in range(5)]
    assert check(START + D, emails, policy=US_MA).allowed
    assert check(START + D, history, channel=EMAIL, policy=US_MA).allowed


def test_ma_other_numbers_allow_two_per_thirty_days() -> None:
    work = [
        call(START, point="work", kind="other"),
        call(START + 10 * D, point="work", kind="other"),
    ]
    third = check(START + 25 * D, work, point="work", kind="other", policy=US_MA)
    assert third.reasons == ("ma_telephone_other",)
    assert third.next_allowed_utc == START + 30 * D
    assert third.cap("ma_telephone_other").counted == 2
    # The two budgets are separate: a personal number is still open.
    assert check(START + 25 * D, work, point="cell", kind="personal", policy=US_MA).allowed
    personal = [call(START), call(START + D)]
    assert check(START + 2 * D, personal, point="work", kind="other", policy=US_MA).allowed


def test_ma_an_unknown_number_kind_is_held_to_both_budgets() -> None:
    work = [call(START, point="work", kind="other"), call(START + D, point="work", kind="other")]
    verdict = check(START + 2 * D, work, point="new", kind=None, policy=US_MA)
    assert verdict.reasons == ("ma_telephone_other",)
    unknown_past = [call(START, kind=None), call(START + D, kind=None)]
    assert check(START + 2 * D, unknown_past, kind="other", policy=US_MA).reasons == (
        "ma_telephone_other",
    )


# --- per-number scope -----------------------------------------------------------------------


def test_a_per_number_rule_counts_only_that_number() -> None:
    per_number = CapRule(
        "per_number", frozenset({VOICE, SMS}), 2, 3 * D, scope="number", citation="policy"
    )
    policy = FrequencyPolicy(caps=(per_number,))
    history = [call(START, point="cell"), call(START + H, point="cell"), call(START, point="home")]
    assert check(START + D, history, point="cell", policy=policy).reasons == ("per_number",)
    home = check(START + D, history, point="home", policy=policy)
    assert home.allowed
    assert home.cap("per_number").counted == 1
    assert any(e.excluded == (("per_number", "other_contact_point"),) for e in home.attempts)
    # Unknown contact points are treated as the same number, on either side.
    assert not check(START + D, history, point=None, policy=policy).allowed
    unknown = [call(START, point=None), call(START + H, point="home")]
    assert not check(START + D, unknown, point="home", policy=policy).allowed


# --- bunching -------------------------------------------------------------------------------


def test_a_second_unanswered_call_to_one_number_within_five_minutes_is_flagged() -> None:
    history = [call(START, R.NO_ANSWER)]
    verdict = check(START + timedelta(minutes=4), history)
    assert verdict.allowed  # a flag never blocks
    assert verdict.flags == (BUNCHING_UNANSWERED,) == ("bunching_2_unanswered_within_5_min",)
    assert check(START + timedelta(minutes=5, seconds=1), history).flags == ()
    assert check(START + timedelta(minutes=4), history, point="home").flags == ()
    answered = [call(START, R.CONVERSATION)]
    assert BUNCHING_UNANSWERED not in check(START + timedelta(minutes=4), answered).flags
    assert check(START + timedelta(minutes=4), history, channel=SMS).flags == ()


def test_the_seventh_call_in_one_local_day_is_flagged() -> None:
    day = utc(2024, 3, 6, 13)  # Wed 6 March 08:00 EST
    history = [call(day + i * H, R.BUSY, point=f"n{i}") for i in range(6)]
    verdict = check(day + 12 * H, history, point="n9")  # 20:00 EST, same day
    assert verdict.allowed
    assert verdict.flags == (BUNCHING_DAILY,) == ("bunching_7_calls_in_one_day",)
    assert check(day + 12 * H, history[:5], point="n9").flags == ()
    assert check(day + 16 * H, history, point="n9").flags == ()  # Thu 7 March 00:00 EST


def test_bunching_thresholds_are_configurable() -> None:
    rule = BunchingRule(
        unanswered_calls=3, unanswered_within=timedelta(minutes=10), calls_per_day=3
    )
    policy = FrequencyPolicy(bunching=rule)
    history = [call(START), call(START + timedelta(minutes=6))]
    verdict = check(START + timedelta(minutes=9), history, policy=policy)
    assert verdict.flags == ("bunching_3_unanswered_within_10_min", "bunching_3_calls_in_one_day")
    assert check(START + timedelta(minutes=9), history[:1], policy=policy).flags == ()


# --- policies and validation ----------------------------------------------------------------


def test_combine_adds_the_overlay_and_keeps_identical_rules_once() -> None:
    assert [c.name for c in US_MA.caps] == [
        "reg_f_call_frequency",
        "ma_telephone_personal",
        "ma_telephone_other",
    ]
    assert US_MA.post_conversation == REG_F_POST_CONVERSATION
    assert combine(US_MA, US_FEDERAL, US_MA_OVERLAY_CAPS) == US_MA
    assert MA_TELEPHONE_PERSONAL.citation == MA_TELEPHONE_OTHER.citation == "940 CMR 7.04(1)(f)"
    assert "1006.14" in REG_F_CALL_FREQUENCY.citation


def test_combine_merges_post_conversation_rules_into_the_stricter() -> None:
    longer = PostConversationRule(name="org_post_conversation", days=10, citation="org policy")
    merged = combine(US_FEDERAL, FrequencyPolicy(post_conversation=longer)).post_conversation
    assert merged is not None
    assert merged.days == 10
    assert merged.name == "reg_f_post_conversation+org_post_conversation"


def test_combine_refuses_two_different_rules_with_one_name() -> None:
    other = CapRule("reg_f_call_frequency", frozenset({VOICE}), 3, 7 * D)
    with pytest.raises(ValueError, match="reg_f_call_frequency"):
        combine(US_FEDERAL, FrequencyPolicy(caps=(other,)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: CapRule("x", frozenset({VOICE}), 0, D),
        lambda: CapRule("x", frozenset({VOICE}), -1, D),
        lambda: CapRule("x", frozenset({VOICE}), True, D),
        lambda: CapRule("x", frozenset({VOICE}), 2, timedelta(0)),
        lambda: CapRule("x", frozenset({VOICE}), 2, -D),
        lambda: CapRule("x", frozenset(), 2, D),
        lambda: CapRule("", frozenset({VOICE}), 2, D),
        lambda: CapRule("x", frozenset({VOICE}), 2, D, scope="everyone"),  # type: ignore[arg-type]
        lambda: CapRule("x", frozenset({VOICE}), 2, D, number_kinds=frozenset()),
        lambda: CapRule("x", frozenset({VOICE}), 2, D, number_kinds=frozenset({"fax"})),  # type: ignore[arg-type]
        lambda: PostConversationRule(days=0),
        lambda: PostConversationRule(channels=frozenset()),
        lambda: BunchingRule(calls_per_day=0),
        lambda: BunchingRule(unanswered_within=timedelta(0)),
        lambda: FrequencyPolicy(caps=(REG_F_CALL_FREQUENCY, REG_F_CALL_FREQUENCY)),
        lambda: PastAttempt(datetime(2024, 3, 4, 10), VOICE, "cell", "personal", R.NO_ANSWER),
        lambda: PastAttempt(START, VOICE, "cell", "fax", R.NO_ANSWER),  # type: ignore[arg-type]
        lambda: PastAttempt(START, VOICE, "cell", "personal", "hung_up"),  # type: ignore[arg-type]
    ],
)
def test_invalid_configuration_raises_value_error(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


def test_now_must_be_aware_and_zones_given() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check(datetime(2024, 3, 4, 10), [])
    with pytest.raises(ValueError, match="zone"):
        check(START, [], zones=())
    with pytest.raises(ValueError, match="number_kind"):
        check(START, [], kind="fax")  # type: ignore[arg-type]


def test_instants_are_normalised_to_utc() -> None:
    local = datetime(2024, 3, 4, 10, tzinfo=NY)
    assert call(local).at == START
    assert call(local).at.tzinfo is UTC
    assert check(local, []).now_utc == START


# --- evidence and the gate ------------------------------------------------------------------


def test_as_record_is_json_evidence_with_counts_exclusions_and_citations() -> None:
    history = [
        *calls_every_20h(5),
        call(START + 4 * D, R.BUSY),
        call(START + 4 * D + H, R.CONVERSATION, consent=True),
        text(START + D),
        call(START - 30 * D),  # long gone: not listed
    ]
    verdict = check(START + 4 * D + 2 * H, history, policy=US_MA, zones=(NY, LA))
    record = verdict.as_record()
    assert json.loads(json.dumps(record)) == record
    assert orjson.loads(orjson.dumps(record)) == record
    assert record["rule"] == "frequency_caps"
    assert record["zones"] == ["America/New_York", "America/Los_Angeles"]
    assert record["allowed"] is False
    assert record["reasons"] == ["ma_telephone_personal", "reg_f_post_conversation"]
    caps = {c["rule"]: c for c in record["caps"]}
    assert caps["reg_f_call_frequency"]["counted"] == 5
    assert caps["reg_f_call_frequency"]["maxAttempts"] == 7
    assert caps["reg_f_call_frequency"]["windowSeconds"] == 7 * 86400
    assert caps["reg_f_call_frequency"]["scope"] == "person_debt"
    assert caps["reg_f_call_frequency"]["citation"].startswith("12 CFR 1006.14")
    assert caps["ma_telephone_personal"]["counted"] == 8
    assert caps["ma_telephone_personal"]["citation"] == "940 CMR 7.04(1)(f)"
    assert record["postConversation"]["citation"].startswith("12 CFR 1006.14(b)(2)(ii)")
    assert record["postConversation"]["blockedUntil"] is not None
    assert record["historySize"] == 9
    by_index = {a["index"]: a for a in record["attempts"]}
    assert 8 not in by_index
    assert by_index[5]["result"] == "busy"
    assert by_index[5]["excluded"] == [{"rule": "reg_f_call_frequency", "why": "did_not_connect"}]
    assert by_index[5]["countedBy"] == ["ma_telephone_personal"]
    assert by_index[6]["excluded"] == [{"rule": "reg_f_call_frequency", "why": "prior_consent"}]
    assert by_index[6]["blocksUntil"] is not None
    assert by_index[7]["channel"] == "sms"
    assert by_index[7]["countedBy"] == ["ma_telephone_personal"]


def test_as_rule_plugs_into_the_gate() -> None:
    history = calls_every_20h(7)
    facts = AttemptFacts(
        channel=VOICE, now=START + 6 * D, borrower_do_not_contact=False, case_status="open"
    )
    rule = as_rule(
        history=history,
        policy=US_FEDERAL,
        zones=(NY,),
        contact_point_id="cell",
        number_kind="personal",
        immediate=True,
    )
    decision = gate.evaluate(facts, (*gate.DEFAULT_RULES, rule))
    assert decision.outcome is Outcome.BLOCK
    assert decision.reasons == ("reg_f_call_frequency",)

    deferred = gate.evaluate(
        facts,
        (
            as_rule(
                history=history,
                policy=US_FEDERAL,
                zones=(NY,),
                contact_point_id="cell",
                number_kind="personal",
                immediate=False,
            ),
        ),
    )
    assert deferred.outcome is Outcome.DEFER
    assert deferred.defer_until == START + 7 * D
    assert gate.evaluate(facts, (rule,)).verdicts[0].rule == "frequency_caps"


def test_local_dates_in_the_expected_zones() -> None:
    # Guard for the fixtures above: the instants are what their comments say.
    assert START.astimezone(NY).date() == date(2024, 3, 4)
    assert utc(2024, 11, 3, 4, 30).astimezone(NY).isoformat() == "2024-11-03T00:30:00-04:00"
    assert utc(2024, 11, 10, 4, 45).astimezone(NY).isoformat() == "2024-11-09T23:45:00-05:00"
