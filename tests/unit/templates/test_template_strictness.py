"""Missing variables and tags: every one is reported, by its dotted path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from parley.templates import MissingVariables, TemplateError, case_context, render


def missing_names(source: str, context: Mapping[str, Any], *, html: bool = False) -> list[str]:
    with pytest.raises(MissingVariables) as caught:
        render(source, context, html=html)
    names: list[str] = caught.value.names
    return names


def test_every_missing_name_is_reported_not_just_the_first() -> None:
    source = "Hi #borrower.first_name, invoice {{ invoiceNumber }}"
    with pytest.raises(MissingVariables) as caught:
        render(source, {"borrower": {}})
    assert caught.value.names == ["borrower.first_name", "invoiceNumber"]
    message = str(caught.value)
    assert "borrower.first_name" in message
    assert "invoiceNumber" in message
    assert message.startswith("2 template variables have no value")


def test_missing_variables_is_a_template_error_and_a_value_error() -> None:
    with pytest.raises(MissingVariables) as caught:
        render("{{ x }}", {})
    assert isinstance(caught.value, TemplateError)
    assert isinstance(caught.value, ValueError)


def test_names_are_sorted_and_deduplicated() -> None:
    source = "{{ zeta }} #case.number {{ alpha }} #case.number {{ zeta }}"
    assert missing_names(source, {"case": {}}) == ["alpha", "case.number", "zeta"]


def test_a_missing_parent_is_reported_with_the_full_path() -> None:
    source = "#borrower.first_name #borrower.last_name {{ case.outstanding_amount.amount }}"
    assert missing_names(source, {}) == [
        "borrower.first_name",
        "borrower.last_name",
        "case.outstanding_amount.amount",
    ]


def test_subscript_lookups_are_named_like_attributes() -> None:
    assert missing_names('{{ case["number"] }} {{ rows[0] }}', {"case": {}, "rows": []}) == [
        "case.number",
        "rows[0]",
    ]


def test_none_counts_as_missing() -> None:
    context = {"borrower": {"first_name": None}, "invoiceNumber": None}
    assert missing_names("Dear #borrower.first_name {{ invoiceNumber }}", context) == [
        "borrower.first_name",
        "invoiceNumber",
    ]


def test_agent_tags_are_missing_for_an_automated_message() -> None:
    context = case_context(
        borrower={"first_name": "Ana"},
        case={"number": "C-1"},
        agent=None,
        organization={"name": "Acme"},
    )
    assert missing_names("Regards, #agent.name (#agent.phone)", context) == [
        "agent.name",
        "agent.phone",
    ]


def test_an_agent_given_as_none_is_reported_the_same_way() -> None:
    assert missing_names("#agent.name", {"agent": None}) == ["agent.name"]


def test_values_used_in_arithmetic_filters_and_loops_are_reported() -> None:
    source = (
        "{{ case.days_past_due + 1 }} {{ case.balance|money('USD') }} "
        "{% for p in case.payments %}x{% endfor %} {{ nickname|upper }}"
    )
    assert missing_names(source, {"case": {}}) == [
        "case.balance",
        "case.days_past_due",
        "case.payments",
        "nickname",
    ]


def test_missing_values_inside_loops_use_the_loop_name() -> None:
    context = {"payments": [{"amount": "10"}, {"date": "2024-01-01"}]}
    assert missing_names("{% for p in payments %}{{ p.amount }}{% endfor %}", context) == [
        "p.amount"
    ]


def test_missing_values_are_reported_in_html_bodies_too() -> None:
    assert missing_names("<p>#borrower.first_name</p>", {}, html=True) == ["borrower.first_name"]


def test_conditions_defaults_and_defined_tests_may_use_missing_values() -> None:
    source = (
        "{% if agent %}#agent.name{% else %}our team{% endif %}|"
        "{{ nickname|default('friend') }}|"
        "{{ 'yes' if case.note is defined else 'no' }}|"
        "{{ 'open' if case.status == 'open' else 'other' }}"
    )
    assert render(source, {"case": {}}) == "our team|friend|no|other"


def test_guarded_values_are_printed_when_present() -> None:
    source = "{% if agent %}#agent.name{% else %}our team{% endif %}"
    assert render(source, {"agent": {"name": "Sam"}}) == "Sam"


def test_an_unused_missing_value_is_not_reported() -> None:
    # Only what the render actually prints or computes with counts.
    source = "{% if false %}{{ never }}{% endif %}ok"
    assert render(source, {}) == "ok"
