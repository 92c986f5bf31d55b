"""Locale-aware formatting of money, numbers and dates with Babel (CLDR data).

Locale strings come from borrower records and API callers, so they are forgiving:
BCP-47 ("en-US") and POSIX ("da_DK.UTF-8") spellings are accepted and anything Babel
does not know falls back to ``en_US`` rather than failing a send.

Babel results are cached: a campaign prints the same due dates and fees thousands of
times, and one ``format_currency`` call costs about as much as rendering a template.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import lru_cache
from typing import Final

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.numbers import format_currency, format_decimal, parse_pattern

from parley.domain.money import Money

DEFAULT_LOCALE: Final = "en_US"

#: CLDR puts no-break spaces in many formats ("1.234,50\xa0€", "3:30\u202fPM"). They are
#: not in the GSM-7 alphabet, so one of them would switch a whole SMS to UCS-2 and halve
#: its capacity; plain-text output swaps them for ordinary spaces.
_NO_BREAK_SPACES: Final = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2007": " "})


@lru_cache(maxsize=256)
def resolve_locale(tag: str | None) -> Locale:
    """The Babel locale for ``tag`` ("en", "en-US", "da_DK", "de_DE.UTF-8"), else en_US."""
    if tag:
        # POSIX suffixes: "da_DK.UTF-8", "de_DE@euro".
        cleaned = tag.strip().split(".", 1)[0].split("@", 1)[0].replace("-", "_")
        try:
            return Locale.parse(cleaned)
        except (UnknownLocaleError, ValueError, TypeError):
            pass
    return Locale.parse(DEFAULT_LOCALE)


def format_money(money: Money, locale: Locale, *, plain_spaces: bool = False) -> str:
    """``Money`` in the locale's currency format: "$1,234.50", "1.234,50 €", "1.234,50 kr."."""
    return _money(_finite(money.amount), money.currency, str(locale), plain_spaces)


def format_number(
    value: Decimal | int | float,
    locale: Locale,
    *,
    decimals: int | None = None,
    plain_spaces: bool = False,
) -> str:
    """A number with the locale's grouping and decimal sign; ``decimals`` fixes the digits."""
    amount = _finite(value if isinstance(value, Decimal) else Decimal(str(value)))
    if decimals is not None and not 0 <= decimals <= 20:
        raise ValueError(f"decimals must be between 0 and 20, got {decimals}")
    return _number(amount, str(locale), decimals, plain_spaces)


def format_date(
    value: dt.date, locale: Locale, *, format: str = "medium", plain_spaces: bool = False
) -> str:
    """A date in a CLDR style ("short", "medium", "long", "full") or pattern ("dd.MM.yyyy")."""
    if isinstance(value, dt.datetime):
        value = value.date()
    return _date(value, str(locale), format, plain_spaces)


def format_datetime(
    value: dt.datetime, locale: Locale, *, format: str = "medium", plain_spaces: bool = False
) -> str:
    """A date and time in a CLDR style or pattern, in the datetime's own time zone."""
    # Equal instants in different zones compare (and hash) equal but print differently,
    # so the zone is part of the cache key.
    return _datetime(value, value.tzinfo, str(locale), format, plain_spaces)


def _finite(amount: Decimal) -> Decimal:
    # Also keeps NaN out of the caches below (a signalling NaN cannot be hashed).
    if not amount.is_finite():
        raise ValueError(f"cannot format a non-finite amount: {amount}")
    return amount


def _plain(text: str, plain_spaces: bool) -> str:
    return text.translate(_NO_BREAK_SPACES) if plain_spaces else text


# The cached helpers take the locale as a string: Locale objects are hashable, but the
# string makes the cache key obvious and cheap.


@lru_cache(maxsize=4096)
def _money(amount: Decimal, currency: str, locale: str, plain_spaces: bool) -> str:
    return _plain(format_currency(amount, currency, locale=locale), plain_spaces)


@lru_cache(maxsize=4096)
def _number(amount: Decimal, locale: str, decimals: int | None, plain_spaces: bool) -> str:
    if decimals is None:
        return _plain(format_decimal(amount, locale=locale), plain_spaces)
    # Keep the locale's own grouping (e.g. Indian lakh "#,##,##0") and fix the digits.
    pattern = parse_pattern(Locale.parse(locale).decimal_formats[None].pattern)
    pattern.frac_prec = (decimals, decimals)
    return _plain(pattern.apply(amount, locale), plain_spaces)


@lru_cache(maxsize=4096)
def _date(value: dt.date, locale: str, format: str, plain_spaces: bool) -> str:
    return _plain(babel_format_date(value, format=format, locale=locale), plain_spaces)


@lru_cache(maxsize=4096)
def _datetime(
    value: dt.datetime, zone: dt.tzinfo | None, locale: str, format: str, plain_spaces: bool
) -> str:
    return _plain(babel_format_datetime(value, format=format, locale=locale), plain_spaces)
