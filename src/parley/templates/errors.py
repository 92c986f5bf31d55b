"""Errors raised by the template package, all under one ``TemplateError`` base.

Callers (the API, campaign rendering, the dispatch pipeline) catch ``TemplateError``
to turn any template problem into a clear 4xx or a per-recipient failure; the
subclasses say whether the template itself is broken (fix the template) or the data
given to it is incomplete (fix the borrower or case record).
"""

from __future__ import annotations

from collections.abc import Iterable

import jinja2


class TemplateError(ValueError):
    """Base class: anything that stops a template from compiling or rendering."""


class InvalidTemplate(TemplateError, jinja2.TemplateSyntaxError):
    """The template cannot be compiled: a syntax error or a construct we forbid.

    Derives from jinja2's ``TemplateSyntaxError`` so ``lineno`` and ``message`` are
    available and ``str()`` shows the offending line.
    """

    def __init__(self, message: str, lineno: int, source: str | None = None) -> None:
        jinja2.TemplateSyntaxError.__init__(self, message, lineno)
        # jinja2 prints the offending line when it knows the source.
        self.source = source


class UnsafeTemplate(TemplateError):
    """The sandbox stopped an operation while rendering (private attribute, huge value)."""


class MissingVariables(TemplateError):
    """One or more variables or tags had no value. ``names`` lists every one of them."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names: list[str] = sorted(set(names))
        count = len(self.names)
        noun = "variable has" if count == 1 else "variables have"
        super().__init__(f"{count} template {noun} no value: {', '.join(self.names)}")


class RenderError(TemplateError):
    """Rendering failed for another reason (e.g. a filter given a value it cannot format)."""
