"""Reply text prepared for classification: sentences of case-folded, accent-folded words
with contractions and texting slang expanded, each word mapped back to its span in the
original (so evidence quotes the borrower's own words); and email replies without the
quoted message and signature lines below them."""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Final

# --- normalization -----------------------------------------------------------------------

_SENTENCE_BREAKS: Final = frozenset(".!?;:\n\r\v\f\x85\u2028\u2029…。｡¡¿")
# Comma (ASCII, fullwidth, ideographic), low-9 quotation mark, em and en dash.
_CLAUSE_BREAKS: Final = frozenset(",\uff0c\u3001\u201a\u2014\u2013")
_SLANG: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "u": ("you",),
        "ur": ("your",),
        "pls": ("please",),
        "plz": ("please",),
        "pleas": ("please",),
        "txt": ("text",),
        "txts": ("texts",),
        "txting": ("texting",),
        "msg": ("message",),
        "msgs": ("messages",),
        "cannot": ("can", "not"),
    }
)
# "don't" arrives as "don" + "t"; "dont" glued. Both become "do not".
_NT_STEMS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "don": "do",
        "doesn": "does",
        "didn": "did",
        "won": "will",
        "can": "can",
        "isn": "is",
        "aren": "are",
        "wasn": "was",
        "weren": "were",
        "shouldn": "should",
        "wouldn": "would",
        "couldn": "could",
        "haven": "have",
        "hasn": "has",
        "hadn": "had",
        "ain": "am",
        "mustn": "must",
        "needn": "need",
    }
)
_GLUED_NT: Final[Mapping[str, str]] = MappingProxyType(
    {stem + "t": base for stem, base in _NT_STEMS.items()}
)
_SUBWORD: Final = re.compile(r"[^\W_]+")
_MARKS_AND_FORMAT: Final = frozenset({"Mn", "Mc", "Me", "Cf"})


def _drop_marks(text: str) -> str:
    """Drop combining marks (accents, variation selectors) and invisible format chars."""
    return "".join(ch for ch in text if unicodedata.category(ch) not in _MARKS_AND_FORMAT)


def _fold(word: str) -> list[str]:
    """Case-, accent- and compatibility-fold one raw word; may split it (ligatures)."""
    text = _drop_marks(unicodedata.normalize("NFKD", word))
    text = _drop_marks(unicodedata.normalize("NFKD", text.casefold()))
    return _SUBWORD.findall(text)


@lru_cache(maxsize=4096)
def _char_class(ch: str) -> str:
    """'w' word, 'i' ignorable, 's' sentence break, 'c' clause break, ' ' separator."""
    if ch.isalnum():
        return "w"
    category = unicodedata.category(ch)
    if category[0] == "M":
        return "w"
    if category == "Cf":
        return "i"
    if ch in _SENTENCE_BREAKS:
        return "s"
    if ch in _CLAUSE_BREAKS:
        return "c"
    compat = unicodedata.normalize("NFKC", ch)
    if any(c in _SENTENCE_BREAKS for c in compat):
        return "s"
    if "," in compat:
        return "c"
    return " "


@dataclass(frozen=True, slots=True)
class Sentence:
    text: str  # normalized: words joined by single spaces; "," marks a clause break
    words: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]  # per word, in the (cleaned) reply text
    offsets: tuple[int, ...]  # per word, in `text`

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """Map a character range of `text` to the range of the reply it came from."""
        first = max(bisect_right(self.offsets, start) - 1, 0)
        if first < len(self.words) and self.offsets[first] + len(self.words[first]) <= start:
            first += 1
        last = bisect_left(self.offsets, end) - 1
        if first > last or first >= len(self.words):
            return (0, 0)
        return (self.spans[first][0], self.spans[last][1])


def _raw_sentences(text: str) -> list[list[tuple[str, int, int]]]:
    """Split into sentences of raw words with their spans; ',' entries mark clause breaks."""
    sentences: list[list[tuple[str, int, int]]] = [[]]
    chars: list[str] = []
    start = -1
    end = -1

    def flush() -> None:
        nonlocal start
        if chars:
            sentences[-1].append(("".join(chars), start, end))
            chars.clear()
        start = -1

    for index, ch in enumerate(text):
        kind = _char_class(ch)
        if kind == "w":
            if start < 0:
                start = index
            chars.append(ch)
            end = index + 1
        elif kind == "i":
            continue
        else:
            flush()
            if kind == "s":
                if sentences[-1]:
                    sentences.append([])
            elif kind == "c":
                sentences[-1].append((",", index, index + 1))
    flush()
    return [sentence for sentence in sentences if sentence]


def _folded_words(raw: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    for word, start, end in raw:
        if word == ",":
            if out and out[-1][0] != ",":
                out.append((word, start, end))
            continue
        out.extend((part, start, end) for part in _fold(word))
    while out and out[-1][0] == ",":
        out.pop()
    while out and out[0][0] == ",":
        out.pop(0)
    return out


def _expand(words: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Expand contractions and texting shorthand: "don't" -> "do not", "u" -> "you"."""
    out: list[tuple[str, int, int]] = []
    index = 0
    while index < len(words):
        word, start, end = words[index]
        following = words[index + 1][0] if index + 1 < len(words) else ""
        if word in _NT_STEMS and following == "t":
            end = words[index + 1][2]
            out.extend([(_NT_STEMS[word], start, end), ("not", start, end)])
            index += 2
            continue
        if word in _GLUED_NT:
            out.extend([(_GLUED_NT[word], start, end), ("not", start, end)])
        elif word in _SLANG:
            out.extend((part, start, end) for part in _SLANG[word])
        else:
            out.append((word, start, end))
        index += 1
    return out


def _sentence(words: list[tuple[str, int, int]]) -> Sentence:
    offsets: list[int] = []
    position = 0
    for word, _, _ in words:
        offsets.append(position)
        position += len(word) + 1
    return Sentence(
        text=" ".join(word for word, _, _ in words),
        words=tuple(word for word, _, _ in words),
        spans=tuple((start, end) for _, start, end in words),
        offsets=tuple(offsets),
    )


def analyze(text: str) -> tuple[str, list[Sentence]]:
    """(the keyword form of the whole reply, its normalized sentences)."""
    sentences: list[Sentence] = []
    keyword_words: list[str] = []
    for raw in _raw_sentences(text):
        folded = _folded_words(raw)
        keyword_words.extend(word for word, _, _ in folded if word != ",")
        expanded = _expand(folded)
        if expanded:
            sentences.append(_sentence(expanded))
    return " ".join(keyword_words), sentences


# --- email replies ------------------------------------------------------------------------

_QUOTE_HEADER: Final = re.compile(
    r"^\s*(?:on\b.{0,300}\bwrote:\s*$|-{2,}\s*original message\s*-{2,}|from:\s|_{5,}\s*$"
    r"|--\s*$)",
    re.IGNORECASE,
)
_SIGNATURE_LINE: Final = re.compile(r"^\s*(?:sent from my |get outlook for )", re.IGNORECASE)


def strip_email_quote(text: str) -> str:
    """Keep the new part of an email reply: drop quoted lines and what follows a quote
    header ("On ... wrote:"), plus mobile signatures. Our own "Reply STOP" notice in the
    quoted message must not count as the consumer's words."""
    kept: list[str] = []
    for line in text.splitlines():
        if _QUOTE_HEADER.match(line):
            break
        if line.lstrip().startswith(">") or _SIGNATURE_LINE.match(line):
            continue
        kept.append(line)
    return "\n".join(kept)
