"""SMPP codec: PDUs, GSM 03.38 / UCS-2, concatenation UDH, receipts and status codes.

Our encoder is cross-checked with the `smpp34` library's decoder (an independent
implementation) and vice versa."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import smpp34
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley.channels.smpp import coding, dlr, pdu
from parley.domain.status import EventType
from parley.templates.sms import GSM7_CHARACTERS, analyze_sms, split_sms

GSM_TEXT = st.text(alphabet=sorted(GSM7_CHARACTERS), max_size=400)
ANY_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x1FAFF), max_size=300
)


# -- PDUs ----------------------------------------------------------------------------


def test_header_round_trip_and_length_check() -> None:
    message = pdu.Pdu(pdu.Command.ENQUIRE_LINK, 0, 42)
    wire = message.encode()
    assert wire == bytes.fromhex("00000010 00000015 00000000 0000002a")
    assert pdu.decode(wire) == message
    with pytest.raises(pdu.PduError):
        pdu.decode(wire + b"x")
    with pytest.raises(pdu.PduError):
        pdu.decode(wire[:10])


def test_split_stream_reads_consecutive_pdus_and_rejects_garbage() -> None:
    a = pdu.Pdu(pdu.Command.ENQUIRE_LINK, 0, 1).encode()
    b = pdu.Pdu(pdu.Command.DELIVER_SM_RESP, 0, 2, b"\0").encode()
    assert [p.sequence_number for p in pdu.split_stream(a + b)] == [1, 2]
    for bad in (a + b"\x00\x00", b"\x00\x00\x00\x05" + b"x" * 12, a[:-1]):
        with pytest.raises(pdu.PduError):
            pdu.split_stream(bad)


def test_submit_sm_we_encode_decodes_with_smpp34() -> None:
    body = pdu.ShortMessage(
        source_addr="15005550006",
        destination_addr="15558675310",
        short_message=coding.udh_concat(9, 2, 1) + b"hello",
        source_addr_ton=1,
        source_addr_npi=1,
        dest_addr_ton=1,
        dest_addr_npi=1,
        esm_class=pdu.ESM_UDHI,
        registered_delivery=1,
        data_coding=pdu.DC_UCS2,
        tlvs={pdu.Tag.USER_MESSAGE_REFERENCE: b"\x00\x2a"},
    ).encode()
    wire = pdu.Pdu(pdu.Command.SUBMIT_SM, 0, 7, body).encode()
    theirs = smpp34.decode(wire)
    assert isinstance(theirs, smpp34.SubmitSm)
    assert theirs.sequence_number == 7
    assert (theirs.source_addr, theirs.destination_addr) == ("15005550006", "15558675310")
    assert (theirs.source_addr_ton, theirs.dest_addr_npi) == (1, 1)
    assert theirs.esm_class == 0x40 and theirs.data_coding == 8
    assert theirs.registered_delivery == 1
    assert theirs.short_message == bytes([5, 0, 3, 9, 2, 1]) + b"hello"
    assert [(t.tag, t.value) for t in theirs.tlvs] == [(0x0204, b"\x00\x2a")]


def test_deliver_sm_smpp34_encodes_decodes_with_ours() -> None:
    wire = smpp34.DeliverSm(
        "12025550123",
        "15005550006",
        b"STOP",
        source_addr_ton=1,
        source_addr_npi=1,
        esm_class=0,
        data_coding=0,
        tlvs=[smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, b"\x02")],
        sequence_number=99,
    ).encode()
    message = pdu.decode(wire)
    assert message.command_id == pdu.Command.DELIVER_SM and message.sequence_number == 99
    sm = pdu.ShortMessage.decode(message.body)
    assert (sm.source_addr, sm.source_addr_ton, sm.destination_addr) == (
        "12025550123",
        1,
        "15005550006",
    )
    assert sm.short_message == b"STOP"
    assert sm.tlvs == {pdu.Tag.MESSAGE_STATE: b"\x02"}


# A loaded machine can make even small draws slow: the property, not the speed, is tested.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@RELAXED
@given(
    source=st.text(alphabet="0123456789", max_size=20),
    dest=st.text(alphabet="0123456789", max_size=20),
    payload=st.binary(max_size=254),
    esm=st.integers(0, 255),
    dc=st.integers(0, 255),
    tlvs=st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=20), max_size=3),
)
def test_short_message_round_trip(
    source: str, dest: str, payload: bytes, esm: int, dc: int, tlvs: dict[int, bytes]
) -> None:
    sm = pdu.ShortMessage(
        source_addr=source,
        destination_addr=dest,
        short_message=payload,
        esm_class=esm,
        data_coding=dc,
        tlvs=tlvs,
    )
    assert pdu.ShortMessage.decode(sm.encode()) == sm


def test_bind_body_layout() -> None:
    body = pdu.bind_transceiver_body("parley", "secret1", "", 0, 0, "")
    assert body == b"parley\0secret1\0\0\x34\x00\x00\0"
    with pytest.raises(pdu.PduError):
        pdu.bind_transceiver_body("x" * 16, "pw")


def test_status_names() -> None:
    assert pdu.status_name(0x58) == "ESME_RTHROTTLED"
    assert pdu.status_name(0x400) == "0x00000400"


# -- text coding ---------------------------------------------------------------------


def test_gsm7_is_unpacked_septets_with_escapes() -> None:
    assert coding.gsm7_encode("@£$") == bytes([0x00, 0x01, 0x02])
    assert coding.gsm7_encode("Hi") == b"Hi"
    assert coding.gsm7_encode("€[") == bytes([0x1B, 0x65, 0x1B, 0x3C])
    assert coding.gsm7_encode("_") == bytes([0x11])
    with pytest.raises(coding.EncodingError):
        coding.gsm7_encode("é😀")


@RELAXED
@given(GSM_TEXT)
def test_gsm7_round_trip(text: str) -> None:
    encoded = coding.gsm7_encode(text)
    assert all(octet < 0x80 for octet in encoded)
    assert len(encoded) == analyze_sms(text).units
    assert coding.gsm7_decode(encoded) == text


@RELAXED
@given(ANY_TEXT)
def test_ucs2_round_trip(text: str) -> None:
    assert coding.ucs2_decode(coding.ucs2_encode(text)) == text


def test_decode_text_by_data_coding() -> None:
    assert coding.decode_text(b"Hi", 0) == "Hi"
    assert coding.decode_text("né".encode("latin-1"), 3) == "né"
    assert coding.decode_text("ñ😀".encode("utf-16-be"), 8) == "ñ😀"
    assert coding.decode_text(b"abc", 1) == "abc"
    assert coding.decode_text(b"\x00\xff", 4) == "00ff"  # binary is shown, not guessed


@RELAXED
@given(st.one_of(GSM_TEXT, ANY_TEXT).filter(bool))
def test_parts_match_the_preview_and_reassemble(text: str) -> None:
    parts = coding.encode_message(text, reference=200)
    analysis = analyze_sms(text)
    assert len(parts) == analysis.segments
    gsm = analysis.encoding == "GSM-7"
    texts = []
    for number, part in enumerate(parts, start=1):
        assert part.data_coding == (0 if gsm else 8)
        assert len(part.short_message) <= (160 if gsm else 140)
        if len(parts) == 1:
            assert part.esm_class == 0
            payload = part.short_message
        else:
            assert part.esm_class == pdu.ESM_UDHI
            concat, payload = coding.split_udh(part.short_message)
            assert concat == coding.Concat(200, len(parts), number)
        texts.append(coding.decode_text(payload, part.data_coding))
    assert texts == split_sms(text)
    assert "".join(texts) == text


def test_segment_sizes_153_and_67() -> None:
    gsm = coding.encode_message("a" * 161, 1)
    assert [len(p.short_message) - 6 for p in gsm] == [153, 8]
    ucs = coding.encode_message("ж" * 71, 1)
    assert [(len(p.short_message) - 6) // 2 for p in ucs] == [67, 4]
    assert len(coding.encode_message("a" * 160, 1)) == 1
    assert len(coding.encode_message("ж" * 70, 1)) == 1


def test_udh_16bit_reference_and_sar_tlvs() -> None:
    concat, payload = coding.split_udh(bytes([6, 8, 4, 0x01, 0x02, 3, 2]) + b"xy")
    assert concat == coding.Concat(0x0102, 3, 2) and payload == b"xy"
    assert coding.split_udh(bytes([9, 0, 3])) == (None, bytes([9, 0, 3]))  # malformed
    tlvs = {
        pdu.Tag.SAR_MSG_REF_NUM: b"\x00\x05",
        pdu.Tag.SAR_TOTAL_SEGMENTS: b"\x02",
        pdu.Tag.SAR_SEGMENT_SEQNUM: b"\x01",
    }
    assert coding.sar_concat(tlvs) == coding.Concat(5, 2, 1)


# -- receipts and statuses -----------------------------------------------------------


def test_receipt_text_fields() -> None:
    text = (
        "id:1234567890 sub:001 dlvrd:001 submit date:2611221529 done date:2611221530 "
        "stat:DELIVRD err:000 text:Your payment: due"
    )
    receipt = dlr.parse_receipt(text, {})
    assert receipt is not None
    assert receipt.message_id == "1234567890"
    assert receipt.stat == "DELIVRD" and receipt.event_type is EventType.DELIVERED
    assert receipt.done_at == datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
    assert receipt.fields["text"] == "Your payment: due"  # colons in text do not split it
    local = dlr.parse_receipt(text, {}, timezone(timedelta(hours=2)))
    assert local is not None and local.done_at == datetime(2026, 11, 22, 13, 30, tzinfo=UTC)


def test_receipt_with_seconds_lowercase_and_missing_fields() -> None:
    receipt = dlr.parse_receipt("id:AB12 stat:undeliv err:21 done date:261122153045", {})
    assert receipt is not None
    assert receipt.stat == "UNDELIV" and receipt.event_type is EventType.FAILED
    assert receipt.done_at == datetime(2026, 11, 22, 15, 30, 45, tzinfo=UTC)
    assert receipt.reason == "undeliverable (error 21)"
    assert dlr.parse_receipt("stat:DELIVRD", {}) is None  # names no message
    assert dlr.parse_receipt("hello there", {}) is None


def test_receipt_tlvs_win_over_text() -> None:
    tlvs = {
        pdu.Tag.RECEIPTED_MESSAGE_ID: b"tlv-id\0",
        pdu.Tag.MESSAGE_STATE: bytes([8]),
        pdu.Tag.NETWORK_ERROR_CODE: bytes([3, 0, 11]),
    }
    receipt = dlr.parse_receipt("id:text-id stat:DELIVRD err:000", tlvs)
    assert receipt is not None
    assert (receipt.message_id, receipt.stat, receipt.error) == ("tlv-id", "REJECTD", "3:11")
    assert receipt.event_type is EventType.REJECTED


@pytest.mark.parametrize(
    ("stat", "expected"),
    [
        ("DELIVRD", EventType.DELIVERED),
        ("ACCEPTD", EventType.SENT),
        ("ENROUTE", EventType.SENT),
        ("EXPIRED", EventType.FAILED),
        ("DELETED", EventType.FAILED),
        ("UNDELIV", EventType.FAILED),
        ("REJECTD", EventType.REJECTED),
        ("UNKNOWN", EventType.UNKNOWN),
        ("SOMETHING", EventType.UNKNOWN),
    ],
)
def test_stat_mapping(stat: str, expected: EventType) -> None:
    assert dlr.event_type(stat) is expected


def test_receipt_id_conversion() -> None:
    assert dlr.convert_id("255", "dec_to_hex") == "ff"
    assert dlr.convert_id("ff", "hex_to_dec") == "255"
    assert dlr.convert_id("zz", "hex_to_dec") == "zz"
    assert dlr.convert_id("abc", "none") == "abc"


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (pdu.Status.ESME_RTHROTTLED, True),
        (pdu.Status.ESME_RMSGQFUL, True),
        (pdu.Status.ESME_RSYSERR, True),
        (pdu.Status.ESME_RX_T_APPN, True),
        (pdu.Status.ESME_RINVDSTADR, False),
        (pdu.Status.ESME_RINVSRCADR, False),
        (pdu.Status.ESME_RINVMSGLEN, False),
        (pdu.Status.ESME_RX_P_APPN, False),
    ],
)
def test_command_status_classes(status: int, retryable: bool) -> None:
    assert dlr.is_retryable(status) is retryable
    assert dlr.status_reason(status)
