"""Delivery receipts and command_status codes, normalized.

A receipt is a deliver_sm whose esm_class says "SMSC delivery receipt"; its text follows
SMPP 3.4 Appendix B (a de-facto format, varied by every SMSC):

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
    stat:DDDDDDD err:E text:...

The receipted_message_id / message_state / network_error_code TLVs, when present, win
over the text (they are unambiguous). Dates are read as UTC unless the account says
otherwise (SMSCs stamp receipts in their own local time, which SMPP does not state).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timezone

from parley.channels.smpp import pdu
from parley.domain.status import EventType

# Receipt `stat:` values (7 characters) -> our events.
STAT_EVENTS: dict[str, EventType] = {
    "DELIVRD": EventType.DELIVERED,
    "ACCEPTD": EventType.SENT,  # accepted on the handset owner's behalf (e.g. by an agent)
    "ENROUTE": EventType.SENT,  # in the network, not yet delivered
    "EXPIRED": EventType.FAILED,  # validity period passed without delivery
    "DELETED": EventType.FAILED,
    "UNDELIV": EventType.FAILED,
    "REJECTD": EventType.REJECTED,
    "UNKNOWN": EventType.UNKNOWN,
}
STAT_REASONS: dict[str, str] = {
    "EXPIRED": "expired: not delivered within its validity period",
    "DELETED": "deleted by the SMSC before delivery",
    "UNDELIV": "undeliverable",
    "REJECTD": "rejected by the SMSC or the network",
}
# message_state TLV values (SMPP 3.4 5.2.28) -> the receipt's stat text.
MESSAGE_STATES: dict[int, str] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}

_FIELD = re.compile(
    r"(?P<key>id|sub|dlvrd|submit date|done date|stat|err|text)\s*:\s*", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str
    stat: str  # normalized to upper case, e.g. DELIVRD
    error: str | None
    submitted_at: datetime | None
    done_at: datetime | None
    fields: dict[str, str]  # every field of the text, as given (for the raw record)

    @property
    def event_type(self) -> EventType:
        return event_type(self.stat)

    @property
    def reason(self) -> str | None:
        reason = STAT_REASONS.get(self.stat)
        if reason and self.error and self.error.strip("0"):
            return f"{reason} (error {self.error})"
        return reason


def event_type(stat: str) -> EventType:
    return STAT_EVENTS.get(stat.strip().upper(), EventType.UNKNOWN)


def parse_text(text: str) -> dict[str, str]:
    """The `key:value` fields of a receipt text; `text:` takes the rest of the line."""
    fields: dict[str, str] = {}
    matches = list(_FIELD.finditer(text))
    for index, match in enumerate(matches):
        key = match.group("key").lower()
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        if key == "text":
            end = len(text)
        fields.setdefault(key, text[match.end() : end].strip())
        if key == "text":
            break
    return fields


def parse_date(value: str | None, tz: timezone) -> datetime | None:
    """YYMMDDhhmm or YYMMDDhhmmss as given in receipts."""
    if not value or not value.isdigit() or len(value) not in (10, 12):
        return None
    try:
        fmt = "%y%m%d%H%M%S" if len(value) == 12 else "%y%m%d%H%M"
        return datetime.strptime(value, fmt).replace(tzinfo=tz)
    except ValueError:
        return None


def parse_receipt(text: str, tlvs: dict[int, bytes], tz: timezone = UTC) -> Receipt | None:
    """A receipt from a deliver_sm's text and TLVs; None when it names no message."""
    fields = parse_text(text)
    message_id = fields.get("id", "")
    raw_id = tlvs.get(pdu.Tag.RECEIPTED_MESSAGE_ID)
    if raw_id:
        message_id = raw_id.split(b"\0", 1)[0].decode("latin-1").strip() or message_id
    stat = fields.get("stat", "").upper()
    state = tlvs.get(pdu.Tag.MESSAGE_STATE)
    if state and state[0] in MESSAGE_STATES:
        stat = MESSAGE_STATES[state[0]]
    error = fields.get("err")
    network_error = tlvs.get(pdu.Tag.NETWORK_ERROR_CODE)
    if network_error and len(network_error) == 3 and not (error and error.strip("0")):
        # network type (1 octet) + error code (2 octets)
        error = f"{network_error[0]}:{int.from_bytes(network_error[1:], 'big')}"
    if not message_id:
        return None
    return Receipt(
        message_id=message_id,
        stat=stat or "UNKNOWN",
        error=error,
        submitted_at=parse_date(fields.get("submit date"), tz),
        done_at=parse_date(fields.get("done date"), tz),
        fields=fields,
    )


def convert_id(message_id: str, conversion: str) -> str:
    """Some SMSCs answer submit_sm with a hex id and put it in decimal in receipts (or
    the reverse); `conversion` (account setting) brings the receipt's id to the form
    submit_sm_resp used: none | dec_to_hex | hex_to_dec."""
    try:
        if conversion == "dec_to_hex":
            return format(int(message_id, 10), "x")
        if conversion == "hex_to_dec":
            return str(int(message_id, 16))
    except ValueError:
        pass
    return message_id


# -- submit_sm_resp command_status ----------------------------------------------------

# The SMSC is busy or briefly unable: the same submit later will likely pass.
RETRYABLE_STATUSES: frozenset[int] = frozenset(
    {
        pdu.Status.ESME_RMSGQFUL,
        pdu.Status.ESME_RTHROTTLED,
        pdu.Status.ESME_RSYSERR,
        pdu.Status.ESME_RSUBMITFAIL,
        pdu.Status.ESME_RX_T_APPN,
        pdu.Status.ESME_RINVBNDSTS,  # the bind went away under us: rebind and resend
        pdu.Status.ESME_RDELIVERYFAILURE,  # data_sm: delivery failed "for now"
        pdu.Status.ESME_RUNKNOWNERR,
    }
)

STATUS_REASONS: dict[int, str] = {
    pdu.Status.ESME_RINVDSTADR: "invalid destination address",
    pdu.Status.ESME_RINVSRCADR: "invalid source address (sender id not allowed)",
    pdu.Status.ESME_RMSGQFUL: "message queue full at the SMSC",
    pdu.Status.ESME_RTHROTTLED: "throttled: submitting faster than the SMSC allows",
    pdu.Status.ESME_RSYSERR: "SMSC system error",
    pdu.Status.ESME_RINVMSGLEN: "message too long",
    pdu.Status.ESME_RINVDSTTON: "invalid destination type of number",
    pdu.Status.ESME_RINVDSTNPI: "invalid destination numbering plan",
    pdu.Status.ESME_RINVESMCLASS: "invalid esm_class",
    pdu.Status.ESME_RX_P_APPN: "permanent application error at the SMSC",
    pdu.Status.ESME_RX_R_APPN: "the SMSC rejected the message",
}


def is_retryable(command_status: int) -> bool:
    return command_status in RETRYABLE_STATUSES


def status_reason(command_status: int) -> str:
    return STATUS_REASONS.get(command_status, f"SMSC answered {pdu.status_name(command_status)}")
