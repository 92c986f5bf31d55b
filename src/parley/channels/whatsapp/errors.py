"""Meta's WhatsApp error codes, normalized: what a code means for a retry and for an agent.

The same codes arrive two ways: synchronously in the Graph API's error JSON when a send
is refused, and later in a `failed` status webhook (`errors[].code`). Codes we do not
know are `unknown`: permanent unless the HTTP status was 5xx (Meta's own trouble).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorKind:
    category: str  # outside_window, undeliverable, rate_limited, ..., unknown
    retryable: bool
    description: str
    retry_after: float | None = None  # seconds, when the code implies a wait


KNOWN: dict[str, ErrorKind] = {
    "131047": ErrorKind(
        "outside_window",
        False,
        "re-engagement required: more than 24 hours since the customer last wrote; "
        "send an approved template",
    ),
    "131026": ErrorKind(
        "undeliverable",
        False,
        "message undeliverable (not a WhatsApp user, old app version, or not accepted terms)",
    ),
    "130429": ErrorKind(
        "rate_limited", True, "throughput limit of the business phone number reached"
    ),
    # Pair rate limit: about one message per 6 seconds to the same customer.
    "131056": ErrorKind(
        "pair_rate_limited",
        True,
        "too many messages to this customer in a short time",
        retry_after=6.0,
    ),
    "131009": ErrorKind("invalid_parameter", False, "a parameter value is not valid"),
    "100": ErrorKind("invalid_parameter", False, "invalid parameter"),
    "131051": ErrorKind("unsupported_type", False, "unsupported message type"),
    "132000": ErrorKind(
        "template_parameters", False, "template parameter count does not match the template"
    ),
    "132001": ErrorKind("template_missing", False, "template does not exist in that language"),
    "132015": ErrorKind("template_paused", False, "template is paused for low quality"),
    "132016": ErrorKind("template_disabled", False, "template is disabled"),
    # Authentication: the account's token, not the message, is wrong. Retry once an
    # operator fixes it rather than failing a whole campaign permanently.
    "190": ErrorKind("auth", True, "access token expired or invalid"),
    "0": ErrorKind("auth", True, "authentication exception"),
    "131000": ErrorKind("provider_error", True, "something went wrong at Meta"),
}


def classify(code: str | None, http_status: int | None = None) -> ErrorKind:
    """What error `code` means; unknown codes are permanent unless Meta answered 5xx."""
    kind = KNOWN.get(code or "")
    if kind is not None:
        return kind
    retryable = http_status is not None and (http_status >= 500 or http_status == 429)
    label = f"WhatsApp error {code}" if code else "WhatsApp error without a code"
    return ErrorKind("unknown", retryable, label)


def reason(code: str | None, title: str | None = None) -> str:
    """An event's reason: `<category>: <description>` (category `unknown` for new codes)."""
    kind = classify(code)
    detail = kind.description
    if kind.category == "unknown" and title:
        detail = f"{detail} ({title})"
    return f"{kind.category}: {detail}"
