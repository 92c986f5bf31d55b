"""TwiML documents Parley hands to Twilio: every call's parties meet in a conference.

A conference (rather than a bridged ``<Dial><Number>``) is what makes the live controls
real Twilio operations: mute is the Participants API (``Muted=true``), a transfer adds
another agent's leg to the same conference, and DTMF is ``<Play digits>`` on the
borrower's leg, which then rejoins the conference.
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr


def _attrs(values: Mapping[str, str | None]) -> str:
    return "".join(f" {k}={quoteattr(v)}" for k, v in values.items() if v is not None)


def conference(
    name: str,
    *,
    status_callback: str | None = None,
    record_callback: str | None = None,
    end_on_exit: bool = False,
    before: str = "",
) -> str:
    """Join conference `name`; with `record_callback`, record it from the start.

    Nobody ends the conference by leaving: Parley hangs up the remaining legs itself
    when the borrower leaves or the last agent does (so a transfer can hand over).
    """
    attrs = {
        "startConferenceOnEnter": "true",
        "endConferenceOnExit": "true" if end_on_exit else "false",
        "beep": "false",
        "statusCallback": status_callback,
        "statusCallbackEvent": "start end join leave" if status_callback else None,
    }
    if record_callback:
        attrs |= {
            "record": "record-from-start",
            "recordingStatusCallback": record_callback,
            "recordingStatusCallbackEvent": "completed",
        }
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f"{before}<Dial><Conference{_attrs(attrs)}>{escape(name)}</Conference></Dial>"
        "</Response>"
    )


def play_digits(digits: str, then: str) -> str:
    """Send `digits` as DTMF tones on a leg, then continue with the TwiML `then`."""
    inner = then.split("<Response>", 1)[1]
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f"<Play digits={quoteattr(digits)}/>" + inner
    )


def say_and_hang_up(text: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f"<Say>{escape(text)}</Say><Hangup/></Response>"
    )


def voicemail(prompt: str, record_callback: str, max_length: int = 120) -> str:
    """Take a voicemail: the recording comes back through `record_callback`."""
    attrs = {
        "maxLength": str(max_length),
        "playBeep": "true",
        "recordingStatusCallback": record_callback,
        "recordingStatusCallbackEvent": "completed",
    }
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f"<Say>{escape(prompt)}</Say><Record{_attrs(attrs)}/><Hangup/></Response>"
    )
