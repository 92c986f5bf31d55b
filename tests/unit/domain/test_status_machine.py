"""Property tests for the message status machine (invariant 4)."""

from __future__ import annotations

from functools import reduce

from hypothesis import given
from hypothesis import strategies as st

from parley.domain.status import (
    EVENT_STATUS,
    FROZEN,
    RANK,
    EventType,
    MessageStatus,
    can_dispatch_transition,
    status_after_event,
)

events = st.lists(st.sampled_from(list(EventType)), max_size=12)
starts = st.sampled_from(
    [MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.QUEUED, MessageStatus.NEEDS_REVIEW]
)


def apply(start: MessageStatus, evs: list[EventType]) -> MessageStatus:
    return reduce(status_after_event, evs, start)


@given(starts, events, st.randoms())
def test_final_status_is_independent_of_arrival_order(start, evs, rnd):
    shuffled = list(evs)
    rnd.shuffle(shuffled)
    assert apply(start, evs) == apply(start, shuffled)


@given(starts, events)
def test_duplicates_change_nothing(start, evs):
    doubled = [e for e in evs for _ in range(2)]
    assert apply(start, evs) == apply(start, doubled)


@given(starts, events)
def test_status_never_moves_backward(start, evs):
    current = start
    for e in evs:
        nxt = status_after_event(current, e)
        assert RANK[nxt] >= RANK[current]
        current = nxt


@given(starts, events)
def test_final_status_is_the_highest_ranked_event(start, evs):
    targets = [EVENT_STATUS[e] for e in evs if EVENT_STATUS[e] is not None]
    expected = max([start, *targets], key=lambda s: RANK[s])
    assert RANK[apply(start, evs)] == RANK[expected]


@given(st.sampled_from(sorted(FROZEN)), events)
def test_frozen_statuses_never_change(start, evs):
    assert apply(start, evs) == start


def test_delivered_before_sent_is_kept():
    s = status_after_event(MessageStatus.SENDING, EventType.DELIVERED)
    assert s is MessageStatus.DELIVERED
    assert status_after_event(s, EventType.SENT) is MessageStatus.DELIVERED


def test_read_after_delivered_advances_and_unknown_is_absorbed():
    assert status_after_event(MessageStatus.DELIVERED, EventType.READ) is MessageStatus.READ
    assert status_after_event(MessageStatus.SENT, EventType.UNKNOWN) is MessageStatus.SENT
    assert status_after_event(MessageStatus.SENT, EventType.DEFERRED) is MessageStatus.SENT


def test_bounce_after_delivery_wins_for_email():
    assert status_after_event(MessageStatus.DELIVERED, EventType.BOUNCED) is MessageStatus.BOUNCED


def test_dispatcher_transitions():
    assert can_dispatch_transition(MessageStatus.QUEUED, MessageStatus.SENDING)
    assert can_dispatch_transition(MessageStatus.SENDING, MessageStatus.QUEUED)
    assert not can_dispatch_transition(MessageStatus.SENT, MessageStatus.QUEUED)
    assert not can_dispatch_transition(MessageStatus.CANCELLED, MessageStatus.QUEUED)
    assert not can_dispatch_transition(MessageStatus.DELIVERED, MessageStatus.SENDING)
