"""Jinja filters and output finalizer that format values in the render's locale.

``{{ case.outstanding_amount }}`` prints a ``Money`` as "$1,234.50" or "1.234,50 €"
without a filter; ``money``, ``number``, ``date`` and ``datetime`` filters format
explicitly (another style, a currency for a bare number, a fixed number of decimals).

The locale is chosen per render call, while compiled templates are shared between
renders, so it travels in a context variable set by the renderer.
"""

from __future__ import annotations

import datetime as dt
from contextvars import ContextVar, Token
from decimal import Decimal, InvalidOperation
from typing import Any

from babel import Locale
from jinja2 import Undefined

from parley.domain.money import Money
from parley.templates.formatting import (
    format_date,
    format_datetime,
    format_money,
    format_number,
    resolve_locale,
)

_render_locale: ContextVar[Locale | None] = ContextVar("parley_render_locale", default=None)


def set_render_locale(locale: Locale) -> Token[Locale | None]:
    return _render_locale.set(locale)


def reset_render_locale(token: Token[Locale | None]) -> None:
    _render_locale.reset(token)


def _locale(override: str | None) -> Locale:
    if override is not None:
        return resolve_locale(override)
    return _render_locale.get() or resolve_locale(None)


class ValueFormatting:
    """Finalizer and filters for one environment (HTML or plain text)."""

    def __init__(self, *, plain_spaces: bool) -> None:
        # Plain-text bodies (SMS, text email) get ordinary spaces; see formatting.py.
        self.plain_spaces = plain_spaces

    def filters(self) -> dict[str, Any]:
        return {
            "money": self.money,
            "number": self.number,
            "date": self.date,
            "datetime": self.datetime,
        }

    def finalize(self, value: Any) -> Any:
        """Applied to every ``{{ ... }}`` result before it is printed."""
        if value.__class__ is str:  # the common case, kept cheap
            return value
        if isinstance(value, Money):
            return format_money(value, _locale(None), plain_spaces=self.plain_spaces)
        if isinstance(value, Decimal):
            return format_number(value, _locale(None), plain_spaces=self.plain_spaces)
        if isinstance(value, dt.datetime):
            return format_datetime(value, _locale(None), plain_spaces=self.plain_spaces)
        if isinstance(value, dt.date):
            return format_date(value, _locale(None), plain_spaces=self.plain_spaces)
        return value

    def money(self, value: Any, currency: str | None = None, locale: str | None = None) -> Any:
        """``{{ amount|money("EUR") }}``; a ``Money`` value keeps its own currency."""
        if isinstance(value, Undefined):
            return value  # printed later, which reports it as missing
        if not isinstance(value, Money):
            if currency is None:
                raise ValueError(f"money filter needs a currency for {value!r}")
            value = Money(_decimal(value), currency.upper())
        return format_money(value, _locale(locale), plain_spaces=self.plain_spaces)

    def number(self, value: Any, decimals: int | None = None, locale: str | None = None) -> Any:
        """``{{ rate|number(2) }}``: locale grouping and decimal sign."""
        if isinstance(value, Undefined):
            return value
        if isinstance(value, Money):
            value = value.amount
        return format_number(
            _decimal(value), _locale(locale), decimals=decimals, plain_spaces=self.plain_spaces
        )

    def date(self, value: Any, format: str = "medium", locale: str | None = None) -> Any:
        """``{{ case.due_date|date("long") }}``; accepts dates, datetimes and ISO strings."""
        if isinstance(value, Undefined):
            return value
        if isinstance(value, str):
            value = dt.date.fromisoformat(value[:10])
        if not isinstance(value, dt.date):
            raise ValueError(f"date filter needs a date, got {value!r}")
        return format_date(value, _locale(locale), format=format, plain_spaces=self.plain_spaces)

    def datetime(self, value: Any, format: str = "medium", locale: str | None = None) -> Any:
        """``{{ promise.created_at|datetime("short") }}``; accepts datetimes and ISO strings."""
        if isinstance(value, Undefined):
            return value
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if not isinstance(value, dt.datetime):
            raise ValueError(f"datetime filter needs a datetime, got {value!r}")
        return format_datetime(
            value, _locale(locale), format=format, plain_spaces=self.plain_spaces
        )


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int | float | str):
        try:
            # str() first: Decimal(0.1) would carry the float's binary noise.
            return Decimal(str(value).strip())
        except InvalidOperation:
            pass
    raise ValueError(f"expected a number, got {value!r}")
