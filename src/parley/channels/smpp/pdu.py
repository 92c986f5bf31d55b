"""SMPP 3.4 PDUs: the header, the bodies we send and receive, TLVs, command_status codes.

Our own codec (the test peer uses an independent implementation, `smpp34`, so the two
check each other). Only what an ESME bound as a transceiver needs is modelled:
bind_transceiver, submit_sm, deliver_sm, enquire_link, unbind, generic_nack and their
responses. Everything is big-endian; strings are C-octet strings (NUL-terminated ASCII).

    header = command_length(4) command_id(4) command_status(4) sequence_number(4)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

HEADER = struct.Struct(">IIII")
HEADER_SIZE = HEADER.size  # 16
MAX_PDU_SIZE = 65536  # generous: a deliver_sm is at most a few hundred bytes
MAX_SEQUENCE = 0x7FFFFFFF
RESPONSE_BIT = 0x80000000


class PduError(ValueError):
    """Bytes that are not a well-formed PDU (answer generic_nack / drop the link)."""


class Command(IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


class Status(IntEnum):
    """command_status values (SMPP 3.4 section 5.1.3) we name."""

    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RINVPRTFLG = 0x06
    ESME_RINVREGDLVFLG = 0x07
    ESME_RSYSERR = 0x08
    ESME_RINVSRCADR = 0x0A
    ESME_RINVDSTADR = 0x0B
    ESME_RINVMSGID = 0x0C
    ESME_RBINDFAIL = 0x0D
    ESME_RINVPASWD = 0x0E
    ESME_RINVSYSID = 0x0F
    ESME_RCANCELFAIL = 0x11
    ESME_RREPLACEFAIL = 0x13
    ESME_RMSGQFUL = 0x14
    ESME_RINVSERTYP = 0x15
    ESME_RINVNUMDESTS = 0x33
    ESME_RINVDLNAME = 0x34
    ESME_RINVDESTFLAG = 0x40
    ESME_RINVSUBREP = 0x42
    ESME_RINVESMCLASS = 0x43
    ESME_RCNTSUBDL = 0x44
    ESME_RSUBMITFAIL = 0x45
    ESME_RINVSRCTON = 0x48
    ESME_RINVSRCNPI = 0x49
    ESME_RINVDSTTON = 0x50
    ESME_RINVDSTNPI = 0x51
    ESME_RINVSYSTYP = 0x53
    ESME_RINVREPFLAG = 0x54
    ESME_RINVNUMMSGS = 0x55
    ESME_RTHROTTLED = 0x58
    ESME_RINVSCHED = 0x61
    ESME_RINVEXPIRY = 0x62
    ESME_RINVDFTMSGID = 0x63
    ESME_RX_T_APPN = 0x64
    ESME_RX_P_APPN = 0x65
    ESME_RX_R_APPN = 0x66
    ESME_RQUERYFAIL = 0x67
    ESME_RINVOPTPARSTREAM = 0xC0
    ESME_ROPTPARNOTALLWD = 0xC1
    ESME_RINVPARLEN = 0xC2
    ESME_RMISSINGOPTPARAM = 0xC3
    ESME_RINVOPTPARAMVAL = 0xC4
    ESME_RDELIVERYFAILURE = 0xFE
    ESME_RUNKNOWNERR = 0xFF


def status_name(code: int) -> str:
    try:
        return Status(code).name
    except ValueError:
        return f"0x{code:08X}"


class Tag(IntEnum):
    """TLV tags (SMPP 3.4 section 5.3.2) we read or write."""

    USER_MESSAGE_REFERENCE = 0x0204
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    RECEIPTED_MESSAGE_ID = 0x001E
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    MESSAGE_STATE = 0x0427
    SC_INTERFACE_VERSION = 0x0210


# esm_class bits
ESM_UDHI = 0x40  # the short message starts with a user data header
ESM_TYPE_MASK = 0x3C  # message type bits (deliver_sm)
ESM_SMSC_RECEIPT = 0x04
ESM_SME_ACK = 0x08
ESM_USER_ACK = 0x10
ESM_INTERMEDIATE = 0x20

# data_coding
DC_DEFAULT = 0x00  # the SMSC default alphabet (GSM 03.38 for nearly every SMSC)
DC_IA5 = 0x01
DC_LATIN1 = 0x03
DC_BINARY = 0x04
DC_UCS2 = 0x08

INTERFACE_VERSION = 0x34


@dataclass(frozen=True, slots=True)
class Pdu:
    command_id: int
    command_status: int
    sequence_number: int
    body: bytes = b""

    def encode(self) -> bytes:
        return (
            HEADER.pack(
                HEADER_SIZE + len(self.body),
                self.command_id,
                self.command_status,
                self.sequence_number,
            )
            + self.body
        )

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def name(self) -> str:
        try:
            return Command(self.command_id).name.lower()
        except ValueError:
            return f"0x{self.command_id:08X}"


def decode(data: bytes) -> Pdu:
    """One complete PDU (header included); PduError when the lengths disagree."""
    if len(data) < HEADER_SIZE:
        raise PduError("shorter than a PDU header")
    length, command_id, status, sequence = HEADER.unpack_from(data)
    if length != len(data):
        raise PduError(f"command_length {length} but {len(data)} bytes")
    return Pdu(command_id, status, sequence, bytes(data[HEADER_SIZE:]))


def split_stream(data: bytes) -> list[Pdu]:
    """Consecutive PDUs (a stored receipt can hold several: the parts of one MO message)."""
    pdus: list[Pdu] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < HEADER_SIZE:
            raise PduError("trailing bytes after the last PDU")
        (length,) = struct.unpack_from(">I", data, offset)
        if length < HEADER_SIZE or length > MAX_PDU_SIZE or offset + length > len(data):
            raise PduError(f"bad command_length {length}")
        pdus.append(decode(data[offset : offset + length]))
        offset += length
    return pdus


# -- body fields ---------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def cstring(self, max_len: int) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0 or end - self.offset > max_len:
            raise PduError("unterminated or over-long C-octet string")
        value = self.data[self.offset : end].decode("latin-1")
        self.offset = end + 1
        return value

    def u8(self) -> int:
        if self.offset >= len(self.data):
            raise PduError("body too short")
        value = self.data[self.offset]
        self.offset += 1
        return value

    def octets(self, n: int) -> bytes:
        if self.offset + n > len(self.data):
            raise PduError("body too short")
        value = self.data[self.offset : self.offset + n]
        self.offset += n
        return value

    def rest(self) -> bytes:
        value = self.data[self.offset :]
        self.offset = len(self.data)
        return value


def cstring(value: str, max_len: int) -> bytes:
    raw = value.encode("ascii")
    if b"\0" in raw or len(raw) > max_len:
        raise PduError(f"{value!r}: not a C-octet string of at most {max_len} characters")
    return raw + b"\0"


def encode_tlvs(tlvs: dict[int, bytes]) -> bytes:
    return b"".join(struct.pack(">HH", tag, len(v)) + v for tag, v in tlvs.items())


def decode_tlvs(data: bytes) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise PduError("truncated TLV")
        tag, length = struct.unpack_from(">HH", data, offset)
        offset += 4
        if offset + length > len(data):
            raise PduError("truncated TLV value")
        tlvs[tag] = data[offset : offset + length]
        offset += length
    return tlvs


# -- bind ----------------------------------------------------------------------------


def bind_transceiver_body(
    system_id: str,
    password: str,
    system_type: str = "",
    addr_ton: int = 0,
    addr_npi: int = 0,
    address_range: str = "",
) -> bytes:
    return (
        cstring(system_id, 15)
        + cstring(password, 8)
        + cstring(system_type, 12)
        + bytes([INTERFACE_VERSION, addr_ton, addr_npi])
        + cstring(address_range, 40)
    )


def bind_resp_system_id(body: bytes) -> str:
    if not body:
        return ""  # an error response may carry no body
    return _Reader(body).cstring(15)


# -- submit_sm / deliver_sm (same layout) --------------------------------------------


@dataclass(frozen=True, slots=True)
class ShortMessage:
    """The fields of a submit_sm or deliver_sm (SMPP 3.4 sections 4.4.1 and 4.6.1)."""

    source_addr: str
    destination_addr: str
    short_message: bytes = b""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def encode(self) -> bytes:
        if len(self.short_message) > 254:
            raise PduError("short_message longer than 254 octets")
        return (
            cstring(self.service_type, 5)
            + bytes([self.source_addr_ton, self.source_addr_npi])
            + cstring(self.source_addr, 20)
            + bytes([self.dest_addr_ton, self.dest_addr_npi])
            + cstring(self.destination_addr, 20)
            + bytes([self.esm_class, self.protocol_id, self.priority_flag])
            + cstring(self.schedule_delivery_time, 16)
            + cstring(self.validity_period, 16)
            + bytes(
                [
                    self.registered_delivery,
                    self.replace_if_present_flag,
                    self.data_coding,
                    self.sm_default_msg_id,
                    len(self.short_message),
                ]
            )
            + self.short_message
            + encode_tlvs(self.tlvs)
        )

    @classmethod
    def decode(cls, body: bytes) -> ShortMessage:
        r = _Reader(body)
        service_type = r.cstring(5)
        source_ton, source_npi = r.u8(), r.u8()
        # Addresses are 21 octets in 3.4 but some SMSCs send longer ones: be lenient.
        source = r.cstring(64)
        dest_ton, dest_npi = r.u8(), r.u8()
        dest = r.cstring(64)
        esm_class, protocol_id, priority = r.u8(), r.u8(), r.u8()
        schedule = r.cstring(16)
        validity = r.cstring(16)
        registered, replace_flag, data_coding, default_id = r.u8(), r.u8(), r.u8(), r.u8()
        sm_length = r.u8()
        short_message = r.octets(sm_length)
        tlvs = decode_tlvs(r.rest())
        return cls(
            source_addr=source,
            destination_addr=dest,
            short_message=short_message,
            service_type=service_type,
            source_addr_ton=source_ton,
            source_addr_npi=source_npi,
            dest_addr_ton=dest_ton,
            dest_addr_npi=dest_npi,
            esm_class=esm_class,
            protocol_id=protocol_id,
            priority_flag=priority,
            schedule_delivery_time=schedule,
            validity_period=validity,
            registered_delivery=registered,
            replace_if_present_flag=replace_flag,
            data_coding=data_coding,
            sm_default_msg_id=default_id,
            tlvs=tlvs,
        )

    @property
    def payload(self) -> bytes:
        """The message octets: short_message, or the message_payload TLV when it is used."""
        return self.short_message or self.tlvs.get(Tag.MESSAGE_PAYLOAD, b"")


def submit_sm_resp_message_id(body: bytes) -> str | None:
    if not body:
        return None  # error responses usually carry no body
    try:
        return _Reader(body).cstring(64) or None
    except PduError:
        return None


def deliver_sm_resp_body() -> bytes:
    return b"\0"  # message_id: unused, set to NULL
