"""Locale-aware printing of money, numbers and dates, and the explicit filters."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from parley.domain.money import Money
from parley.templates import RenderError, analyze_sms, render, resolve_locale

DUE = dt.date(2024, 1, 15)


@pytest.mark.parametrize(
    ("locale", "money", "expected"),
    [
        ("en_US", Money(Decimal("1234.50"), "USD"), "$1,234.50"),
        ("de_DE", Money(Decimal("1234.50"), "EUR"), "1.234,50 €"),
        ("da_DK", Money(Decimal("1234.50"), "DKK"), "1.234,50 kr."),
        ("en_US", Money(Decimal("1234"), "JPY"), "¥1,234"),
        ("en_US", Money(Decimal("0.5"), "USD"), "$0.50"),
        ("de_DE", Money(Decimal("-12"), "EUR"), "-12,00 €"),
    ],
)
def test_money_prints_in_the_render_locale(locale: str, money: Money, expected: str) -> None:
    assert render("{{ amount }}", {"amount": money}, locale=locale) == expected


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("en_US", "Jan 15, 2024"), ("de_DE", "15.01.2024"), ("da_DK", "15. jan. 2024")],
)
def test_dates_print_in_the_locale_medium_format(locale: str, expected: str) -> None:
    assert render("#case.due_date", {"case": {"due_date": DUE}}, locale=locale) == expected


def test_datetimes_print_date_and_time_in_their_own_zone() -> None:
    moment = dt.datetime(2024, 1, 15, 15, 30, tzinfo=ZoneInfo("America/New_York"))
    assert render("{{ at }}", {"at": moment}) == "Jan 15, 2024, 3:30:00 PM"
    same_instant = moment.astimezone(ZoneInfo("Europe/Copenhagen"))
    assert render("{{ at }}", {"at": same_instant}) == "Jan 15, 2024, 9:30:00 PM"


def test_decimals_print_with_locale_grouping() -> None:
    context = {"rate": Decimal("1234.5")}
    assert render("{{ rate }}", context) == "1,234.5"
    assert render("{{ rate }}", context, locale="de_DE") == "1.234,5"


@pytest.mark.parametrize(
    "locale", ["en", "en-US", "en_US", "xx_YY", "", "definitely not a locale", "C", None]
)
def test_unknown_or_short_locales_fall_back_to_english(locale: str | None) -> None:
    context = {"amount": Money(Decimal("1234.50"), "USD"), "due": DUE}
    assert render("{{ amount }} {{ due }}", context, locale=locale) == "$1,234.50 Jan 15, 2024"


@pytest.mark.parametrize("locale", ["da-DK", "da_DK", "da_DK.UTF-8", "da_DK@euro", " da-DK "])
def test_bcp47_and_posix_spellings_are_accepted(locale: str) -> None:
    assert str(resolve_locale(locale)) == "da_DK"
    context = {"amount": Money(Decimal("1234.50"), "DKK")}
    assert render("{{ amount }}", context, locale=locale) == "1.234,50 kr."


def test_text_bodies_use_plain_spaces_so_sms_stays_gsm() -> None:
    context = {"amount": Money(Decimal("1234.50"), "EUR"), "at": dt.datetime(2024, 1, 15, 15, 30)}
    text = render("Pay {{ amount }} by {{ at }}", context, locale="de_DE")
    assert "\u00a0" not in text
    assert analyze_sms(text).encoding == "GSM-7"
    english = render("{{ at }}", context)
    assert english == "Jan 15, 2024, 3:30:00 PM"  # CLDR has U+202F before PM
    assert analyze_sms(english).encoding == "GSM-7"


def test_html_bodies_keep_no_break_spaces() -> None:
    context = {"amount": Money(Decimal("1234.50"), "EUR")}
    assert render("{{ amount }}", context, locale="de_DE", html=True) == "1.234,50\u00a0€"


def test_money_filter() -> None:
    context = {"plain": Decimal("99.9"), "text": "1500", "m": Money(Decimal("5"), "EUR")}
    source = "{{ plain|money('eur') }} | {{ text|money('USD') }} | {{ m|money(locale='de_DE') }}"
    assert render(source, context) == "€99.90 | $1,500.00 | 5,00 €"


def test_money_filter_needs_a_currency_for_plain_numbers() -> None:
    with pytest.raises(RenderError, match="needs a currency"):
        render("{{ 5|money }}", {})


def test_money_filter_rejects_text_that_is_not_a_number() -> None:
    with pytest.raises(RenderError, match="expected a number"):
        render("{{ 'abc'|money('USD') }}", {})


def test_number_filter() -> None:
    context = {"n": Decimal("1234567.891"), "i": 1234567, "m": Money(Decimal("12.5"), "USD")}
    source = "{{ n|number }} {{ n|number(2) }} {{ i|number }} {{ i|number(0) }} {{ m|number(1) }}"
    assert render(source, context) == "1,234,567.891 1,234,567.89 1,234,567 1,234,567 12.5"
    assert render("{{ n|number(2) }}", context, locale="de_DE") == "1.234.567,89"


def test_number_filter_keeps_the_locale_grouping_pattern() -> None:
    assert render("{{ n|number(2) }}", {"n": Decimal("1234567")}, locale="en_IN") == (
        "12,34,567.00"
    )


def test_date_filter_styles_patterns_and_inputs() -> None:
    moment = dt.datetime(2024, 1, 15, 23, 0)
    context = {"due": DUE, "iso": "2024-01-15", "at": moment}
    source = (
        "{{ due|date('long') }} | {{ iso|date }} | {{ at|date('short') }} | {{ due|date('dd/MM') }}"
    )
    assert render(source, context) == "January 15, 2024 | Jan 15, 2024 | 1/15/24 | 15/01"
    assert render("{{ due|date('full', locale='de_DE') }}", context) == "Montag, 15. Januar 2024"


def test_datetime_filter() -> None:
    context = {"at": "2024-01-15T09:05:00"}
    assert render("{{ at|datetime('short') }}", context) == "1/15/24, 9:05 AM"
    assert render("{{ at|datetime('short') }}", context, locale="de_DE") == "15.01.24, 09:05"


def test_date_filter_rejects_non_dates() -> None:
    with pytest.raises(RenderError, match="needs a date"):
        render("{{ 5|date }}", {})
