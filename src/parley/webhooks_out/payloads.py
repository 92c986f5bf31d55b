"""The bodies customers receive: one flat JSON object per event, as in the API guide.

The guide's example (``seeds/001``) is a flat object whose ``event`` names the type;
we keep that shape for every event type rather than the ``{type, timestamp, data}``
envelope Standard Webhooks suggests, so the documented example stays true. The
``emit`` call sites pass camelCase ``data``; this module picks (and orders) the fields
each event type publishes, so an internal field never leaks to a customer by accident.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

# Field order is the documented order (the body is serialized in it).
FIELDS: dict[str, tuple[str, ...]] = {
    "message.received": (
        "messageId",
        "caseId",
        "caseNumber",
        "messageType",
        "from",
        "subject",
        "hasAttachments",
        "timestamp",
    ),
    "message.status_changed": (
        "messageId",
        "caseId",
        "messageType",
        "status",
        "previousStatus",
        "errorCode",
        "timestamp",
    ),
    "call.completed": (
        "callId",
        "caseId",
        "borrowerId",
        "direction",
        "from",
        "to",
        "status",
        "durationSeconds",
        "disposition",
        "timestamp",
    ),
    "webhook.test": ("endpointId", "timestamp"),
}

# Event types an endpoint may subscribe to (webhook.test is sent on request only).
SUBSCRIBABLE = ("message.received", "message.status_changed", "call.completed")

# Fields left out when they have no value (the guide: "errorCode when failed",
# "disposition when logged").
_OPTIONAL = frozenset({"errorCode", "disposition"})

# Names call sites may use for a field (the activity feed says `channel`).
_ALIASES = {"messageType": ("channel",), "timestamp": ("occurredAt", "at")}


def build(event_type: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The body for `event_type` from an emit's `data` (fields it lacks are null)."""
    body: dict[str, Any] = {"event": event_type}
    for name in FIELDS[event_type]:
        value = data.get(name)
        for alias in _ALIASES.get(name, ()):
            if value is None:
                value = data.get(alias)
        if name == "timestamp" and value is None:
            value = now
        elif name == "timestamp" and isinstance(value, str):
            # Live-update call sites pass ISO strings; the body always says UTC with a Z.
            value = datetime.fromisoformat(value).astimezone(UTC)
        if value is None and name in _OPTIONAL:
            continue
        body[name] = _plain(value)
    return body


def encode(payload: dict[str, Any]) -> bytes:
    """The exact bytes posted and signed: `event` first, then the documented order.

    The payload comes back from JSONB (which reorders keys), so the order is restored
    here; the same delivery is therefore byte-identical on every attempt.
    """
    event_type = str(payload.get("event", ""))
    order = ("event", *FIELDS.get(event_type, ()))
    ordered = {k: payload[k] for k in order if k in payload}
    ordered.update({k: v for k, v in payload.items() if k not in ordered})
    return orjson.dumps(ordered)


def _plain(value: Any) -> Any:
    """JSON-ready: RFC 3339 UTC with a Z for times, strings for ids."""
    if isinstance(value, datetime):
        text = value.isoformat().replace("+00:00", "Z")
        return text
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return str(value)
