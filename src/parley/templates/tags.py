"""CRM-style merge tags (``#borrower.first_name``) as a Jinja extension.

Collections teams come from CRMs where merge fields look like ``#case.due_date``. The
extension rewrites such tags in a template's literal text into ordinary Jinja lookups,
so tags and ``{{ variables }}`` share one context, one strictness rule and one
formatter. A tag is ``#`` + identifier + one or more ``.identifier`` parts; anything
else keeps its ``#`` ("Invoice #123", "#1", "#hashtag", a sentence ending in
"#case.number." keeps its full stop).

Only literal text is rewritten: ``{{ "#case.number" }}`` prints the tag text itself.
Jinja does not tell extensions which text came from a ``{% raw %}`` block, so tags are
rewritten there too; use the string form to print a literal tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from jinja2.ext import Extension
from jinja2.lexer import (
    TOKEN_DATA,
    TOKEN_DOT,
    TOKEN_NAME,
    TOKEN_VARIABLE_BEGIN,
    TOKEN_VARIABLE_END,
    Token,
    TokenStream,
)

TAG_PATTERN: Final = re.compile(r"#([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")

#: Words the Jinja parser reads as operators or constants at the start of an
#: expression; a tag rooted at one of them could not mean a context variable.
_RESERVED_ROOTS: Final = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None"}
)


def find_tags(text: str) -> list[str]:
    """Dotted paths of the tags in plain ``text``, in order ("borrower.first_name", ...)."""
    return [m.group(1) for m in TAG_PATTERN.finditer(text) if _is_tag(m.group(1))]


def _is_tag(path: str) -> bool:
    return path.split(".", 1)[0] not in _RESERVED_ROOTS


class MergeTags(Extension):
    """Turns ``#a.b.c`` in template text into the tokens of ``{{ a.b.c }}``."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        for token in stream:
            if token.type != TOKEN_DATA or "#" not in token.value:
                yield token
            else:
                yield from _expand(token)


def _expand(token: Token) -> Iterator[Token]:
    text: str = token.value
    position = 0
    for match in TAG_PATTERN.finditer(text):
        path = match.group(1)
        if not _is_tag(path):
            continue
        start = match.start()
        if start > position:
            yield _text(token, position, start)
        # Line numbers keep pointing at the tag's own line in error messages.
        lineno = token.lineno + text.count("\n", 0, start)
        yield Token(lineno, TOKEN_VARIABLE_BEGIN, "{{")
        for index, part in enumerate(path.split(".")):
            if index:
                yield Token(lineno, TOKEN_DOT, ".")
            yield Token(lineno, TOKEN_NAME, part)
        yield Token(lineno, TOKEN_VARIABLE_END, "}}")
        position = match.end()
    if position < len(text):
        yield _text(token, position, len(text))


def _text(token: Token, start: int, end: int) -> Token:
    text: str = token.value
    return Token(token.lineno + text.count("\n", 0, start), TOKEN_DATA, text[start:end])
