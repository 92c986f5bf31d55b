"""TwiML documents: well-formed, escaped, and carrying the attributes Twilio acts on."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from parley.voice import twiml


def _parse(document: str) -> ET.Element:
    return ET.fromstring(document)


def test_conference_records_and_reports_when_asked() -> None:
    root = _parse(
        twiml.conference(
            "parley-1", status_callback="https://x/c?a=1&b=2", record_callback="https://x/r"
        )
    )
    (dial,) = root
    (conference,) = dial
    assert conference.text == "parley-1"
    assert conference.get("statusCallback") == "https://x/c?a=1&b=2"
    assert conference.get("statusCallbackEvent") == "start end join leave"
    assert conference.get("record") == "record-from-start"
    assert conference.get("recordingStatusCallback") == "https://x/r"
    assert conference.get("endConferenceOnExit") == "false"
    plain = _parse(twiml.conference("parley-1"))[0][0]
    assert plain.get("record") is None and plain.get("statusCallback") is None


def test_play_digits_then_rejoin() -> None:
    root = _parse(twiml.play_digits("12w#", twiml.conference("parley-2")))
    assert [child.tag for child in root] == ["Play", "Dial"]
    assert root[0].get("digits") == "12w#"
    assert root[1][0].text == "parley-2"


def test_spoken_text_is_escaped() -> None:
    root = _parse(twiml.say_and_hang_up('Tom & Jerry <call> "us"'))
    assert root[0].text == 'Tom & Jerry <call> "us"'
    assert root[1].tag == "Hangup"
    voicemail = _parse(twiml.voicemail("Leave a message", "https://x/r?a=1&b=2"))
    assert [c.tag for c in voicemail] == ["Say", "Record", "Hangup"]
    assert voicemail[1].get("recordingStatusCallback") == "https://x/r?a=1&b=2"
