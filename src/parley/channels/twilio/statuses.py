"""Twilio message statuses and error codes, normalized to Parley's event types.

Unknown statuses map to `EventType.UNKNOWN` (never an exception): Twilio adds statuses
over time and a new one must not stop the webhook pipeline.
"""

from __future__ import annotations

from parley.domain.status import EventType

STATUS_EVENTS: dict[str, EventType] = {
    # Still inside Twilio: nothing has reached the carrier yet.
    "accepted": EventType.QUEUED,  # a Messaging Service accepted it, sender not chosen
    "scheduled": EventType.QUEUED,
    "queued": EventType.QUEUED,
    "sending": EventType.QUEUED,
    "sent": EventType.SENT,  # handed to the carrier
    "delivered": EventType.DELIVERED,  # the carrier confirmed the handset got it
    # Twilio sends `partially_delivered` only after the carrier confirmed some segments
    # of a multi-segment message: the handset was reached and the borrower has part of
    # the text. We count that as delivered (contact made) and flag the gap in `reason`
    # so an agent can follow up; UNKNOWN would leave the message at `sent` forever.
    "partially_delivered": EventType.DELIVERED,
    "undelivered": EventType.FAILED,  # the carrier could not deliver it
    "failed": EventType.FAILED,  # Twilio could not send it (no carrier attempt)
    "canceled": EventType.FAILED,  # a scheduled message cancelled before sending
    "read": EventType.READ,  # WhatsApp / RCS read receipt
}

# Inbound messages report these; they are not delivery events of an outbound message.
INBOUND_STATUSES = frozenset({"receiving", "received"})

ERROR_REASONS: dict[str, str] = {
    "21610": "recipient has opted out (replied STOP)",
    "21211": "invalid 'To' phone number",
    "21408": "no permission to send to this region",
    "21612": "cannot route to this number from the sender",
    "21614": "'To' number is not a mobile number",
    "30001": "queue overflow at Twilio",
    "30002": "Twilio account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked by the recipient or carrier",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier (spam)",
    "30008": "unknown error from the carrier",
    "30034": "unregistered 10DLC sender",
    "63016": "WhatsApp: outside the 24-hour customer service window",
}


def event_type(status: str) -> EventType:
    return STATUS_EVENTS.get(status.strip().lower(), EventType.UNKNOWN)


def reason(status: str, error_code: str | None) -> str | None:
    if error_code:
        return ERROR_REASONS.get(error_code, f"Twilio error {error_code}")
    if status == "partially_delivered":
        return "partially delivered: some segments did not arrive"
    if status == "canceled":
        return "cancelled before sending"
    return None
