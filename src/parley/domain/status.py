"""The message status machine.

Provider events arrive duplicated and out of order (a `delivered` before its `sent`).
The rule that makes that harmless: every status has a rank, and a provider event can only
move a message to a status of higher rank. Because the final status is then the maximum
rank over all events received, it does not depend on the order the events arrived in.
Every event is still stored; only the message's current status is monotonic.

Internal transitions made by the dispatcher (claiming a message, returning it to the
queue after a transient error, cancelling it) are separate and explicit, see
`DISPATCH_TRANSITIONS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class MessageStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its sendAt time
    QUEUED = "queued"
    SENDING = "sending"  # claimed by a worker; the provider may be being called
    NEEDS_REVIEW = "needs_review"  # a worker died mid-send and the provider can't tell us
    SENT = "sent"
    FAILED = "failed"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    OPENED = "opened"
    READ = "read"
    CLICKED = "clicked"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"  # the compliance gate refused it; terminal
    RECEIVED = "received"  # inbound messages


class EventType(StrEnum):
    """Normalized provider event types (django-anymail's set plus `read`)."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    OPENED = "opened"
    CLICKED = "clicked"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCED = "bounced"
    REJECTED = "rejected"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    UNKNOWN = "unknown"


# Rank order for provider-driven progress. `failed` sits below `delivered`: a carrier
# that reports a failure and later a delivery did deliver. `bounced` sits above
# `delivered` because an email "delivered" to the receiving MTA can still bounce later.
RANK: dict[MessageStatus, int] = {
    MessageStatus.SCHEDULED: 0,
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 10,
    MessageStatus.NEEDS_REVIEW: 15,
    MessageStatus.SENT: 20,
    MessageStatus.FAILED: 30,
    MessageStatus.DELIVERED: 40,
    MessageStatus.BOUNCED: 50,
    MessageStatus.OPENED: 60,
    MessageStatus.READ: 61,
    MessageStatus.CLICKED: 70,
}

# Statuses no provider event can leave.
FROZEN: frozenset[MessageStatus] = frozenset(
    {MessageStatus.CANCELLED, MessageStatus.BLOCKED, MessageStatus.RECEIVED}
)

EVENT_STATUS: dict[EventType, MessageStatus | None] = {
    EventType.QUEUED: None,
    EventType.SENT: MessageStatus.SENT,
    EventType.DELIVERED: MessageStatus.DELIVERED,
    EventType.READ: MessageStatus.READ,
    EventType.OPENED: MessageStatus.OPENED,
    EventType.CLICKED: MessageStatus.CLICKED,
    EventType.DEFERRED: None,
    EventType.FAILED: MessageStatus.FAILED,
    EventType.BOUNCED: MessageStatus.BOUNCED,
    EventType.REJECTED: MessageStatus.FAILED,
    EventType.COMPLAINED: None,
    EventType.UNSUBSCRIBED: None,
    EventType.UNKNOWN: None,
}

# Statuses in which the dispatcher has nothing more to do with the message.
TERMINAL: frozenset[MessageStatus] = frozenset(
    {
        MessageStatus.SENT,
        MessageStatus.FAILED,
        MessageStatus.DELIVERED,
        MessageStatus.BOUNCED,
        MessageStatus.OPENED,
        MessageStatus.READ,
        MessageStatus.CLICKED,
        MessageStatus.CANCELLED,
        MessageStatus.BLOCKED,
        MessageStatus.NEEDS_REVIEW,
        MessageStatus.RECEIVED,
    }
)

# Explicit transitions the dispatcher (not a provider event) may make.
DISPATCH_TRANSITIONS: dict[MessageStatus, frozenset[MessageStatus]] = {
    MessageStatus.SCHEDULED: frozenset(
        {MessageStatus.QUEUED, MessageStatus.CANCELLED, MessageStatus.BLOCKED}
    ),
    MessageStatus.QUEUED: frozenset(
        {
            MessageStatus.SENDING,
            MessageStatus.CANCELLED,
            MessageStatus.FAILED,
            MessageStatus.BLOCKED,
            MessageStatus.SCHEDULED,  # deferred by the compliance gate
        }
    ),
    MessageStatus.SENDING: frozenset(
        {
            MessageStatus.SENT,
            MessageStatus.QUEUED,  # transient error: back to the queue for a retry
            MessageStatus.FAILED,
            MessageStatus.NEEDS_REVIEW,
        }
    ),
    MessageStatus.NEEDS_REVIEW: frozenset({MessageStatus.SENT, MessageStatus.FAILED}),
}

CANCELLABLE: frozenset[MessageStatus] = frozenset({MessageStatus.SCHEDULED, MessageStatus.QUEUED})


def status_after_event(current: MessageStatus, event: EventType) -> MessageStatus:
    """The message status after a provider event; unchanged when the event can't advance it."""
    if current in FROZEN:
        return current
    target = EVENT_STATUS[event]
    if target is None:
        return current
    if RANK[target] > RANK[current]:
        return target
    return current


def parts_event(parts: Iterable[MessageStatus]) -> EventType:
    """What the parts of a message sent as several separately receipted parts (a long SMS
    over SMPP, each part with its own SMSC message id and receipt) amount to, as one event
    for the message: `delivered` once every part is delivered, else `failed` as soon as any
    part is failed, else `sent`.

    Each part's own status follows `status_after_event` (forward only, so a part reported
    failed and later delivered is delivered); the message then moves by
    `status_after_parts(message, parts_event(parts))` after each part event, so it stays
    forward only too (a `needs_review` message stays put, see there). Once every part's
    receipts are in, the message is `delivered` if every part is, and `failed` if any part
    ended failed, in whatever order they came.
    """
    statuses = list(parts)
    if statuses and all(s is MessageStatus.DELIVERED for s in statuses):
        return EventType.DELIVERED
    if any(s is MessageStatus.FAILED for s in statuses):
        return EventType.FAILED
    return EventType.SENT


def status_after_parts(current: MessageStatus, event: EventType) -> MessageStatus:
    """The status of a message sent as several parts once its parts amount to `event`
    (`parts_event`): as `status_after_event`, except that a `needs_review` message stays.

    A message is `needs_review` with parts when a later part failed after earlier ones
    were accepted (SMPP): its parts are only those the SMSC accepted, so what they amount
    to is not the message's outcome -- "every part delivered" would hide the part that
    never went, and "a part failed" would settle by itself what a person has to judge (the
    handset may hold the rest). The parts' receipts are stored on the message as evidence
    and move the parts; the message waits for the person's resolution. Staying put keeps
    invariant 4 (nothing moves backward, the result does not depend on arrival order).
    Once a person settled it, its parts still do not move it: a message moves by its parts
    only when every one of them is on record (inbox/message_parts.py, RECORD_SQL).
    """
    if current is MessageStatus.NEEDS_REVIEW:
        return current
    return status_after_event(current, event)


def can_dispatch_transition(current: MessageStatus, target: MessageStatus) -> bool:
    return target in DISPATCH_TRANSITIONS.get(current, frozenset())
