"""case_context: the nested context a case message is rendered with."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from parley.domain.money import Money
from parley.templates import MissingVariables, analyze_sms, case_context, render

BORROWER = {"first_name": "Mette", "last_name": "Hansen", "email": "mette@example.dk"}
CASE = {
    "number": "DK-2024-0042",
    "creditor": "Nordbank",
    "outstanding_amount": Money(Decimal("1234.50"), "DKK"),
    "original_amount": Money(Decimal("2000"), "DKK"),
    "due_date": dt.date(2024, 1, 15),
    "days_past_due": 45,
}
AGENT = {"name": "Lars Jensen", "email": "lars@acme.dk", "phone": "+45 12 34 56 78"}
ORGANIZATION = {"name": "Acme Inkasso", "phone": "+45 70 00 00 00", "email": "info@acme.dk"}


def test_objects_are_nested_under_their_names() -> None:
    context = case_context(borrower=BORROWER, case=CASE, agent=AGENT, organization=ORGANIZATION)
    assert set(context) == {"borrower", "case", "agent", "organization"}
    assert context["case"] == CASE
    assert context["agent"] == AGENT
    assert context["organization"] == ORGANIZATION
    assert context["borrower"] == {**BORROWER, "full_name": "Mette Hansen"}


def test_full_name_is_derived_only_when_absent() -> None:
    given = case_context(
        borrower={"first_name": "Mette", "last_name": "Hansen", "full_name": "Dr. M. Hansen"},
        case=CASE,
        agent=None,
        organization=ORGANIZATION,
    )
    assert given["borrower"]["full_name"] == "Dr. M. Hansen"
    first_only = case_context(
        borrower={"first_name": " Mette ", "last_name": None},
        case=CASE,
        agent=None,
        organization=ORGANIZATION,
    )
    assert first_only["borrower"]["full_name"] == "Mette"


def test_no_names_means_no_full_name() -> None:
    context = case_context(borrower={}, case=CASE, agent=None, organization=ORGANIZATION)
    assert "full_name" not in context["borrower"]
    with pytest.raises(MissingVariables) as caught:
        render("Dear #borrower.full_name", context)
    assert caught.value.names == ["borrower.full_name"]


def test_inputs_are_not_modified() -> None:
    borrower = dict(BORROWER)
    context = case_context(borrower=borrower, case=CASE, agent=AGENT, organization=ORGANIZATION)
    context["case"]["number"] = "changed"
    assert borrower == BORROWER
    assert CASE["number"] == "DK-2024-0042"


def test_without_an_agent_there_is_no_agent_object() -> None:
    context = case_context(borrower=BORROWER, case=CASE, agent=None, organization=ORGANIZATION)
    assert "agent" not in context
    with pytest.raises(MissingVariables) as caught:
        render("#agent.name", context)
    assert caught.value.names == ["agent.name"]


def test_extra_variables_are_top_level() -> None:
    context = case_context(
        borrower=BORROWER,
        case=CASE,
        agent=AGENT,
        organization=ORGANIZATION,
        extra={"invoiceNumber": "INV-9", "paymentLink": "https://pay.example/x"},
    )
    assert render("{{ invoiceNumber }} {{ paymentLink }}", context) == (
        "INV-9 https://pay.example/x"
    )


def test_extra_variables_cannot_replace_the_objects() -> None:
    with pytest.raises(ValueError, match="agent, case"):
        case_context(
            borrower=BORROWER,
            case=CASE,
            agent=AGENT,
            organization=ORGANIZATION,
            extra={"case": {"number": "spoofed"}, "agent": {}, "note": "ok"},
        )


def test_a_danish_reminder_end_to_end() -> None:
    context = case_context(borrower=BORROWER, case=CASE, agent=AGENT, organization=ORGANIZATION)
    source = (
        "Kære #borrower.first_name. Sag #case.number hos #case.creditor: "
        "{{ case.outstanding_amount }} forfaldt #case.due_date "
        "({{ case.days_past_due }} dage). Mvh #agent.name, #organization.name"
    )
    text = render(source, context, locale="da-DK")
    assert text == (
        "Kære Mette. Sag DK-2024-0042 hos Nordbank: 1.234,50 kr. forfaldt 15. jan. 2024 "
        "(45 dage). Mvh Lars Jensen, Acme Inkasso"
    )
    # Danish letters are in the GSM alphabet and the formatted amount uses a plain
    # space, so the reminder stays one GSM-7 segment.
    analysis = analyze_sms(text)
    assert (analysis.encoding, analysis.units, analysis.segments) == ("GSM-7", len(text), 1)
