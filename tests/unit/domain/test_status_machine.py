"""Property tests for the message status machine (invariant 4)."""

from __future__ import annotations

import itertools
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
    parts_event,
    status_after_event,
    status_after_parts,
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


# -- messages sent as separately receipted parts (a long SMS over SMPP) ----------------

PART_EVENTS = [EventType.SENT, EventType.DELIVERED, EventType.FAILED, EventType.REJECTED]
part_events = st.lists(
    st.tuples(st.integers(min_value=0, max_value=2), st.sampled_from(PART_EVENTS)), max_size=12
)


def apply_parts(
    evs: list[tuple[int, EventType]], parts: int = 3
) -> tuple[MessageStatus, list[MessageStatus], list[MessageStatus]]:
    """The message's status, its parts' and every status it went through."""
    statuses = [MessageStatus.SENT] * parts
    message = MessageStatus.SENT
    history = [message]
    for part, event in evs:
        statuses[part] = status_after_event(statuses[part], event)
        message = status_after_event(message, parts_event(statuses))
        history.append(message)
    return message, statuses, history


@given(part_events)
def test_a_message_of_parts_never_moves_backward(evs):
    _, _, history = apply_parts(evs)
    assert all(RANK[b] >= RANK[a] for a, b in itertools.pairwise(history))


@given(part_events)
def test_delivered_only_once_every_part_is(evs):
    _, _, history = apply_parts(evs)
    for n, status in enumerate(history):
        if status is MessageStatus.DELIVERED:
            _, statuses, _ = apply_parts(evs[:n])
            assert statuses == [MessageStatus.DELIVERED] * 3
            break


@given(part_events, st.randoms())
def test_a_message_of_parts_ends_the_same_in_any_order(evs, rnd):
    """Once every part has its final receipt: delivered if every part is, failed if any
    part ended failed, whatever the order and however often each came."""
    final_receipts = [(p, rnd.choice([EventType.DELIVERED, EventType.FAILED])) for p in range(3)]
    evs = evs + final_receipts
    shuffled = evs + rnd.sample(evs, len(evs) // 2)
    rnd.shuffle(shuffled)
    for order in (evs, shuffled):
        message, statuses, _ = apply_parts(order)
        if all(s is MessageStatus.DELIVERED for s in statuses):
            assert message is MessageStatus.DELIVERED
        else:
            assert MessageStatus.FAILED in statuses
            assert message is MessageStatus.FAILED
    assert apply_parts(evs)[0] == apply_parts(shuffled)[0]


def test_parts_event():
    d, f, s = MessageStatus.DELIVERED, MessageStatus.FAILED, MessageStatus.SENT
    assert parts_event([d, d, d]) is EventType.DELIVERED
    assert parts_event([d, s, d]) is EventType.SENT
    assert parts_event([s, f, s]) is EventType.FAILED  # as soon as one part failed
    assert parts_event([d, f, d]) is EventType.FAILED
    assert parts_event([]) is EventType.SENT


@given(st.sampled_from(list(MessageStatus)), part_events)
def test_parts_move_a_message_as_events_do_except_out_of_needs_review(start, evs):
    """A message waiting for review (parts accepted before a later part failed) is not
    settled by its parts' receipts; any other status moves as by one event."""
    statuses = [MessageStatus.SENT] * 3
    message = start
    for part, event in evs:
        statuses[part] = status_after_event(statuses[part], event)
        combined = parts_event(statuses)
        after = status_after_parts(message, combined)
        if message is MessageStatus.NEEDS_REVIEW:
            assert after is MessageStatus.NEEDS_REVIEW
        else:
            assert after is status_after_event(message, combined)
        message = after
