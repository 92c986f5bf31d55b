"""Text <-> short_message octets: GSM 03.38 (data_coding 0), UCS-2 (8), concatenation UDH.

- data_coding 0 is "the SMSC default alphabet", GSM 03.38 for nearly every SMSC. Over
  SMPP it travels *unpacked*: one septet per octet (the SMSC packs it for the air
  interface). Extension-table characters are ESC (0x1B) + their code.
- data_coding 8 is UCS-2, sent as UTF-16BE so that characters outside the BMP (emoji)
  survive as surrogate pairs, which handsets render.
- Long messages are split exactly as `parley.templates.sms.split_sms` counts them (what
  the agent saw in the preview) and sent as parts, each starting with a user data
  header (esm_class UDHI) holding the concatenation IE 0x00: 8-bit reference, total
  parts, this part's number. 6 UDH octets leave 153 septets / 67 UCS-2 units per part.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley.channels.smpp import pdu
from parley.templates.sms import is_gsm7, split_sms

ESC = 0x1B
# GSM 03.38 basic table by code; index 0x1B (ESC) holds a placeholder never produced.
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x00ÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(_BASIC) == 128
_EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
_ENCODE: dict[str, bytes] = {ch: bytes([i]) for i, ch in enumerate(_BASIC) if i != ESC}
_ENCODE.update({ch: bytes([ESC, code]) for code, ch in _EXTENSION.items()})

IE_CONCAT_8BIT = 0x00
IE_CONCAT_16BIT = 0x08


class EncodingError(ValueError):
    pass


def gsm7_encode(text: str) -> bytes:
    """Unpacked GSM 03.38 septets, one per octet; EncodingError for other characters."""
    try:
        return b"".join(_ENCODE[ch] for ch in text)
    except KeyError as exc:
        raise EncodingError(f"{exc.args[0]!r} is not in the GSM 03.38 alphabet") from None


def gsm7_decode(data: bytes) -> str:
    """Unpacked septets to text; unknown escapes and octets above 0x7F are replaced."""
    out: list[str] = []
    i = 0
    while i < len(data):
        code = data[i]
        if code == ESC and i + 1 < len(data):
            out.append(_EXTENSION.get(data[i + 1], "\ufffd"))
            i += 2
            continue
        out.append(_BASIC[code] if code < 128 and code != ESC else "\ufffd")
        i += 1
    return "".join(out)


def ucs2_encode(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def ucs2_decode(data: bytes) -> str:
    if len(data) % 2:
        data = data[:-1]
    return data.decode("utf-16-be", "replace")


def decode_text(data: bytes, data_coding: int) -> str:
    """A received short message's text, by its data_coding."""
    if data_coding in (pdu.DC_UCS2,):
        return ucs2_decode(data)
    if data_coding == pdu.DC_DEFAULT:
        return gsm7_decode(data)
    if data_coding == pdu.DC_IA5:
        return data.decode("ascii", "replace")
    if data_coding == pdu.DC_LATIN1:
        return data.decode("latin-1")
    if data_coding & 0xF0 == 0xF0:  # GSM 03.38 message class coding group
        return data.decode("latin-1") if data_coding & 0x04 else gsm7_decode(data)
    # Binary and other codings: keep the bytes visible rather than guessing.
    return data.decode("latin-1") if data.isascii() else data.hex()


@dataclass(frozen=True, slots=True)
class Part:
    short_message: bytes  # UDH (when concatenated) + payload
    esm_class: int  # ESM_UDHI set for parts of a concatenated message
    data_coding: int
    number: int  # 1-based
    total: int


def encode_message(text: str, reference: int) -> list[Part]:
    """The parts to submit for `text`: one part when it fits a single segment, else
    concatenated parts sharing `reference` (0-255)."""
    gsm = is_gsm7(text)
    coding = pdu.DC_DEFAULT if gsm else pdu.DC_UCS2
    encode = gsm7_encode if gsm else ucs2_encode
    segments = split_sms(text) or [""]
    if len(segments) == 1:
        return [Part(encode(segments[0]), 0, coding, 1, 1)]
    if len(segments) > 255:
        raise EncodingError("more than 255 parts")
    total = len(segments)
    return [
        Part(
            udh_concat(reference & 0xFF, total, number) + encode(segment),
            pdu.ESM_UDHI,
            coding,
            number,
            total,
        )
        for number, segment in enumerate(segments, start=1)
    ]


def udh_concat(reference: int, total: int, number: int) -> bytes:
    return bytes([5, IE_CONCAT_8BIT, 3, reference, total, number])


@dataclass(frozen=True, slots=True)
class Concat:
    reference: int
    total: int
    number: int


def split_udh(short_message: bytes) -> tuple[Concat | None, bytes]:
    """(the concatenation IE, if any; the payload after the UDH). Malformed UDH: the
    octets are returned whole with no concatenation info."""
    if not short_message:
        return None, short_message
    udhl = short_message[0]
    if 1 + udhl > len(short_message):
        return None, short_message
    header, payload = short_message[1 : 1 + udhl], short_message[1 + udhl :]
    concat = None
    i = 0
    while i + 2 <= len(header):
        iei, length = header[i], header[i + 1]
        value = header[i + 2 : i + 2 + length]
        if len(value) != length:
            return None, short_message
        if iei == IE_CONCAT_8BIT and length == 3:
            concat = Concat(value[0], value[1], value[2])
        elif iei == IE_CONCAT_16BIT and length == 4:
            concat = Concat((value[0] << 8) | value[1], value[2], value[3])
        i += 2 + length
    return concat, payload


def sar_concat(tlvs: dict[int, bytes]) -> Concat | None:
    """Concatenation given by the sar_* TLVs instead of a UDH (SMPP 3.4 5.3.2.22-24)."""
    ref = tlvs.get(pdu.Tag.SAR_MSG_REF_NUM)
    total = tlvs.get(pdu.Tag.SAR_TOTAL_SEGMENTS)
    number = tlvs.get(pdu.Tag.SAR_SEGMENT_SEQNUM)
    if ref is None or not total or not number:
        return None
    return Concat(int.from_bytes(ref, "big"), total[0], number[0])
