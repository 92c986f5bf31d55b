"""GSM 03.38 / UCS-2 analysis and segmentation of SMS bodies."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.templates import GSM7_BASIC, GSM7_EXTENSION, analyze_sms, split_sms

# --- an independent oracle, written from the 3GPP TS 23.038 tables -------------------

# Default alphabet by code, 0x00..0x7F, 16 per row; 0x1B is the escape to the extension.
GSM_DEFAULT_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
ESC = 0x1B
# Extension table: character -> code sent after ESC.
GSM_EXTENSION_TABLE = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
GSM_BASIC_CODES = {char: code for code, char in enumerate(GSM_DEFAULT_TABLE) if code != ESC}


def is_gsm(text: str) -> bool:
    return all(char in GSM_BASIC_CODES or char in GSM_EXTENSION_TABLE for char in text)


def gsm_septets(text: str) -> list[int]:
    septets: list[int] = []
    for char in text:
        if char in GSM_EXTENSION_TABLE:
            septets += [ESC, GSM_EXTENSION_TABLE[char]]
        else:
            septets.append(GSM_BASIC_CODES[char])
    return septets


def utf16_code_units(text: str) -> list[int]:
    data = text.encode("utf-16-le", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]


def units(text: str, gsm: bool) -> int:
    return len(gsm_septets(text)) if gsm else len(utf16_code_units(text))


def budget(gsm: bool, segment_count: int) -> int:
    if segment_count <= 1:
        return 160 if gsm else 70
    return 153 if gsm else 67


# --- strategies -----------------------------------------------------------------------

GSM_BASIC_CHARS = sorted(GSM_BASIC_CODES)
EXTENSION_CHARS = sorted(GSM_EXTENSION_TABLE)
LATIN1_NOT_GSM = [chr(c) for c in range(0xA0, 0x100) if not is_gsm(chr(c))]

gsm_basic = st.sampled_from(GSM_BASIC_CHARS)
gsm_extension = st.sampled_from(EXTENSION_CHARS)
latin1 = st.sampled_from(LATIN1_NOT_GSM)
cjk = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
emoji = st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF)

gsm_texts = st.text(alphabet=st.one_of(gsm_basic, gsm_extension), max_size=700)
long_gsm_texts = st.text(alphabet=st.one_of(gsm_basic, gsm_basic, gsm_extension), min_size=150)
mixed_texts = st.text(
    alphabet=st.one_of(gsm_basic, gsm_extension, latin1, cjk, emoji), max_size=400
)
# Mostly GSM with the odd character that forces UCS-2, the case agents get warned about.
mostly_gsm_texts = st.lists(
    st.one_of(gsm_basic, gsm_basic, gsm_basic, gsm_extension, latin1, emoji), max_size=300
).map("".join)
# A surrogate pair stored as two code points, as badly decoded JSON can leave it.
split_pair_texts = st.lists(
    st.one_of(gsm_basic, cjk, st.just("\ud83d\ude00")), min_size=30, max_size=150
).map("".join)

any_text = st.one_of(
    gsm_texts, long_gsm_texts, mixed_texts, mostly_gsm_texts, split_pair_texts, st.text()
)


# --- properties -----------------------------------------------------------------------


@settings(max_examples=400)
@given(any_text)
def test_segment_count_matches_the_split(text: str) -> None:
    assert len(split_sms(text)) == analyze_sms(text).segments


@settings(max_examples=400)
@given(any_text)
def test_segments_join_back_into_the_text(text: str) -> None:
    segments = split_sms(text)
    assert "".join(segments) == text
    assert all(segments), "no empty segments"


@settings(max_examples=400)
@given(any_text)
def test_encoding_units_and_warning_follow_the_alphabet(text: str) -> None:
    analysis = analyze_sms(text)
    gsm = is_gsm(text)
    assert analysis.encoding == ("GSM-7" if gsm else "UCS-2")
    assert analysis.characters == len(text)
    assert analysis.units == units(text, gsm)
    expected_warning = tuple(dict.fromkeys(c for c in text if not is_gsm(c)))
    assert analysis.non_gsm_characters == expected_warning


@settings(max_examples=400)
@given(any_text)
def test_no_segment_exceeds_its_budget(text: str) -> None:
    gsm = is_gsm(text)
    segments = split_sms(text)
    limit = budget(gsm, len(segments))
    assert analyze_sms(text).per_segment == limit
    for segment in segments:
        assert units(segment, gsm) <= limit


@settings(max_examples=400)
@given(any_text)
def test_segments_are_filled_greedily(text: str) -> None:
    """Each segment but the last is full: the next piece would not have fitted."""
    gsm = is_gsm(text)
    segments = split_sms(text)
    if len(segments) == 1:
        assert units(text, gsm) <= budget(gsm, 1)
    if len(segments) > 1:
        assert units(text, gsm) > budget(gsm, 1)
    limit = budget(gsm, len(segments))
    for segment, following in itertools.pairwise(segments):
        first_piece = following[:2] if _starts_with_split_pair(following) else following[0]
        assert units(segment, gsm) + units(first_piece, gsm) > limit


def _starts_with_split_pair(text: str) -> bool:
    return len(text) >= 2 and "\ud800" <= text[0] <= "\udbff" and "\udc00" <= text[1] <= "\udfff"


@settings(max_examples=400)
@given(any_text)
def test_boundaries_never_split_an_escape_or_a_surrogate_pair(text: str) -> None:
    segments = split_sms(text)
    if is_gsm(text):
        encoded = [gsm_septets(segment) for segment in segments]
        assert [s for seg in encoded for s in seg] == gsm_septets(text)
        for septets in encoded:
            # No character encodes as 0x1B itself: ESC is always the first half of a
            # pair, so a segment that ends on it has split the pair.
            assert septets[-1] != ESC
            assert len(septets) <= budget(True, len(segments))
    else:
        encoded = [utf16_code_units(segment) for segment in segments]
        assert [u for seg in encoded for u in seg] == utf16_code_units(text)
        for index, code_units in enumerate(encoded[:-1]):
            ends_high = 0xD800 <= code_units[-1] <= 0xDBFF
            next_low = 0xDC00 <= encoded[index + 1][0] <= 0xDFFF
            assert not (ends_high and next_low), f"pair split after segment {index}"


# --- the alphabet itself --------------------------------------------------------------


def test_gsm_alphabet_matches_the_3gpp_table() -> None:
    assert len(GSM_DEFAULT_TABLE) == 128
    assert set(GSM7_BASIC) == set(GSM_DEFAULT_TABLE) - {"\x1b"}
    assert set(GSM7_EXTENSION) == set(GSM_EXTENSION_TABLE)


@pytest.mark.parametrize("char", ["ç", "á", "í", "ó", "ú", "õ", "\x1b", "`", "\t", "\u00a0"])
def test_characters_outside_gsm_force_ucs2(char: str) -> None:
    analysis = analyze_sms(f"Hello {char} there")
    assert analysis.encoding == "UCS-2"
    assert analysis.non_gsm_characters == (char,)


# --- exact boundaries -----------------------------------------------------------------


def test_empty_message_has_no_segments() -> None:
    analysis = analyze_sms("")
    assert (analysis.encoding, analysis.units, analysis.segments) == ("GSM-7", 0, 0)
    assert split_sms("") == []


def test_160_gsm_characters_fit_one_segment() -> None:
    analysis = analyze_sms("a" * 160)
    assert (analysis.encoding, analysis.units, analysis.segments) == ("GSM-7", 160, 1)
    assert analysis.per_segment == 160
    assert split_sms("a" * 160) == ["a" * 160]


def test_161_gsm_characters_need_two_segments_of_153() -> None:
    analysis = analyze_sms("a" * 161)
    assert (analysis.units, analysis.segments, analysis.per_segment) == (161, 2, 153)
    assert [len(s) for s in split_sms("a" * 161)] == [153, 8]


def test_two_full_concatenated_gsm_segments() -> None:
    assert analyze_sms("a" * 306).segments == 2
    assert [len(s) for s in split_sms("a" * 306)] == [153, 153]
    assert analyze_sms("a" * 307).segments == 3


def test_euro_sign_costs_two_septets_and_tips_159_characters_over() -> None:
    text = "a" * 159 + "€"
    analysis = analyze_sms(text)
    assert (analysis.encoding, analysis.characters, analysis.units) == ("GSM-7", 160, 161)
    assert analysis.segments == 2
    assert split_sms(text) == ["a" * 153, "a" * 6 + "€"]


def test_158_characters_and_a_euro_sign_still_fit_one_segment() -> None:
    analysis = analyze_sms("a" * 158 + "€")
    assert (analysis.units, analysis.segments) == (160, 1)


def test_escape_pair_moves_whole_to_the_next_segment() -> None:
    # 152 septets + "{" (2) would be 154 > 153: the brace starts segment two.
    text = "a" * 152 + "{" + "b" * 10
    assert split_sms(text) == ["a" * 152, "{" + "b" * 10]
    assert analyze_sms(text).units == 164


def test_escape_hole_can_add_a_segment() -> None:
    # 306 septets would fill exactly 2 x 153, but the euro sign cannot start at septet
    # 153 of segment one, leaving a one-septet hole that pushes the last "a" into a third.
    text = "a" * 152 + "€" + "a" * 152
    analysis = analyze_sms(text)
    assert analysis.units == 306
    assert analysis.segments == 3
    assert split_sms(text) == ["a" * 152, "€" + "a" * 151, "a"]


def test_70_ucs2_characters_fit_one_segment_71_do_not() -> None:
    one = analyze_sms("ж" * 70)
    assert (one.encoding, one.units, one.segments, one.per_segment) == ("UCS-2", 70, 1, 70)
    two = analyze_sms("ж" * 71)
    assert (two.segments, two.per_segment) == (2, 67)
    assert [len(s) for s in split_sms("ж" * 71)] == [67, 4]


def test_two_full_concatenated_ucs2_segments() -> None:
    assert analyze_sms("ж" * 134).segments == 2
    assert [len(s) for s in split_sms("ж" * 134)] == [67, 67]
    assert analyze_sms("ж" * 135).segments == 3


def test_emoji_counts_two_units() -> None:
    analysis = analyze_sms("😀")
    assert (analysis.encoding, analysis.characters, analysis.units) == ("UCS-2", 1, 2)
    assert analysis.non_gsm_characters == ("😀",)
    assert analyze_sms("😀" * 35).segments == 1
    assert analyze_sms("😀" * 36).segments == 2


def test_emoji_is_never_split_across_segments() -> None:
    # 66 units + an emoji (2) would be 68 > 67: the emoji opens segment two.
    text = "ж" * 66 + "😀" * 3
    assert analyze_sms(text).units == 72
    assert split_sms(text) == ["ж" * 66, "😀" * 3]


def test_surrogate_pair_stored_as_two_code_points_stays_together() -> None:
    text = "ж" * 66 + "\ud83d\ude00" + "ж" * 10
    segments = split_sms(text)
    assert segments == ["ж" * 66, "\ud83d\ude00" + "ж" * 10]
    assert analyze_sms(text).units == 78


def test_one_non_gsm_character_switches_the_whole_message() -> None:
    gsm_only = "Dear Francois, your balance is due. Café" + "x" * 60  # é is GSM
    assert (analyze_sms(gsm_only).encoding, analyze_sms(gsm_only).segments) == ("GSM-7", 1)
    text = "Dear François, your balance is due. Café" + "x" * 60  # ç is not
    analysis = analyze_sms(text)
    assert analysis.encoding == "UCS-2"
    assert analysis.non_gsm_characters == ("ç",)
    assert (analysis.units, analysis.segments) == (100, 2)


def test_warning_lists_each_offending_character_once_in_order() -> None:
    analysis = analyze_sms("ç ü ç 😀 ç á")  # ü is GSM, the rest is not
    assert analysis.non_gsm_characters == ("ç", "😀", "á")
