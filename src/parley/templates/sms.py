"""SMS encoding analysis: GSM 03.38 vs UCS-2, unit counts and concatenated segments.

Rules (reference/providers.md, "SMS encoding"):

- GSM-7: 160 septets in one segment, 153 per segment once concatenated (the user data
  header takes the rest). Extension-table characters are sent as ESC + character, so
  they cost 2 septets, and the pair must stay in one segment.
- Any character outside GSM-7 switches the whole message to UCS-2: 70 UTF-16 code
  units in one segment, 67 per segment once concatenated. Characters outside the BMP
  (most emoji) take a surrogate pair (2 units) that must stay in one segment.

Segments are filled greedily, which is what handsets and providers do, so the count we
show agents before sending matches what the provider bills.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7: Final = "GSM-7"
UCS2: Final = "UCS-2"

#: GSM 03.38 default alphabet (ESC at 0x1B is the escape code, not a character).
GSM7_BASIC: Final[frozenset[str]] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

#: GSM 03.38 extension table: each is sent as ESC + character (2 septets).
GSM7_EXTENSION: Final[frozenset[str]] = frozenset("\f^{}\\[~]|€")

GSM7_CHARACTERS: Final[frozenset[str]] = GSM7_BASIC | GSM7_EXTENSION

_SURROGATE: Final = re.compile("[\ud800-\udfff]")

GSM7_SINGLE_SEGMENT: Final = 160
GSM7_CONCATENATED_SEGMENT: Final = 153
UCS2_SINGLE_SEGMENT: Final = 70
UCS2_CONCATENATED_SEGMENT: Final = 67


@dataclass(frozen=True, slots=True)
class SmsAnalysis:
    """What an agent sees before sending: encoding, size and segment count."""

    encoding: Encoding
    characters: int  # len(text): code points as Python counts them
    units: int  # GSM-7 septets or UTF-16 code units
    segments: int  # 0 for an empty message
    per_segment: int  # unit budget of each segment at this length (160/153 or 70/67)
    non_gsm_characters: tuple[str, ...]  # distinct characters that forced UCS-2, in order

    @property
    def is_unicode(self) -> bool:
        return self.encoding == UCS2


def is_gsm7(text: str) -> bool:
    """True if every character of ``text`` can be sent in the GSM 03.38 alphabet."""
    return GSM7_CHARACTERS.issuperset(text)


def gsm7_septets(text: str) -> int:
    """Septets needed for GSM-7 ``text`` (extension characters count 2)."""
    return len(text) + sum(text.count(char) for char in GSM7_EXTENSION)


def utf16_units(text: str) -> int:
    """UTF-16 code units of ``text`` (characters outside the BMP count 2)."""
    # surrogatepass: a lone surrogate from badly decoded input still counts as 1 unit
    # instead of crashing the composer.
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def analyze_sms(text: str) -> SmsAnalysis:
    """Encoding, unit count and segment count of an SMS body."""
    gsm = is_gsm7(text)
    units = gsm7_septets(text) if gsm else utf16_units(text)
    segments = len(_segment_ends(text, gsm, units))
    if gsm:
        single, concatenated = GSM7_SINGLE_SEGMENT, GSM7_CONCATENATED_SEGMENT
        non_gsm: tuple[str, ...] = ()
    else:
        single, concatenated = UCS2_SINGLE_SEGMENT, UCS2_CONCATENATED_SEGMENT
        non_gsm = tuple(dict.fromkeys(char for char in text if char not in GSM7_CHARACTERS))
    return SmsAnalysis(
        encoding=GSM7 if gsm else UCS2,
        characters=len(text),
        units=units,
        segments=segments,
        per_segment=single if segments <= 1 else concatenated,
        non_gsm_characters=non_gsm,
    )


def split_sms(text: str) -> list[str]:
    """The segment texts a provider would send, never splitting an escape or surrogate pair.

    ``"".join(split_sms(t)) == t`` and ``len(split_sms(t)) == analyze_sms(t).segments``.
    """
    gsm = is_gsm7(text)
    units = gsm7_septets(text) if gsm else utf16_units(text)
    segments: list[str] = []
    start = 0
    for end in _segment_ends(text, gsm, units):
        segments.append(text[start:end])
        start = end
    return segments


def _segment_ends(text: str, gsm: bool, units: int) -> list[int]:
    """End offsets (exclusive, in code points) of each segment of ``text``."""
    single = GSM7_SINGLE_SEGMENT if gsm else UCS2_SINGLE_SEGMENT
    budget = GSM7_CONCATENATED_SEGMENT if gsm else UCS2_CONCATENATED_SEGMENT
    if units == 0:
        return []
    if units <= single:
        return [len(text)]
    if units == len(text) and (gsm or _SURROGATE.search(text) is None):
        # Every character costs one unit: fixed-size segments, no walk needed. (Two
        # surrogate code points also cost one unit each but must not be separated.)
        return [*range(budget, len(text), budget), len(text)]
    # Greedy packing can leave a one-unit hole before an escape or a surrogate pair,
    # so the count is not simply ceil(units / budget): walk the boundaries.
    return _pack_gsm7(text, budget) if gsm else _pack_utf16(text, budget)


def _pack_gsm7(text: str, budget: int) -> list[int]:
    ends: list[int] = []
    used = 0
    for index, char in enumerate(text):
        cost = 2 if char in GSM7_EXTENSION else 1  # ESC + char stay in one segment
        if used + cost > budget:
            ends.append(index)
            used = 0
        used += cost
    ends.append(len(text))
    return ends


def _pack_utf16(text: str, budget: int) -> list[int]:
    ends: list[int] = []
    used = 0
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        cost = width = 1
        if char > "\uffff":
            cost = 2
        elif (
            "\ud800" <= char <= "\udbff"
            and index + 1 < length
            and "\udc00" <= text[index + 1] <= "\udfff"
        ):
            # A surrogate pair stored as two code points (e.g. from JSON "\\ud83d\\ude00")
            # must travel together like the astral character it stands for.
            cost = width = 2
        if used + cost > budget:
            ends.append(index)
            used = 0
        used += cost
        index += width
    ends.append(length)
    return ends
