"""template_variables: the context names a template needs, for editors and validation."""

from __future__ import annotations

from parley.templates import template_variables


def test_tags_and_variables_are_listed_sorted() -> None:
    source = "Hi #borrower.first_name, invoice {{ invoiceNumber }}, case #case.number"
    assert template_variables(source) == ["borrower.first_name", "case.number", "invoiceNumber"]


def test_attribute_and_subscript_access_give_dotted_paths() -> None:
    source = '{{ case.number }} {{ case["creditor"] }} {{ case.outstanding_amount.currency }}'
    assert template_variables(source) == [
        "case.creditor",
        "case.number",
        "case.outstanding_amount.currency",
    ]


def test_names_used_bare_and_with_paths_are_both_listed() -> None:
    source = "{% if agent %}#agent.name{% endif %}"
    assert template_variables(source) == ["agent", "agent.name"]


def test_each_name_is_listed_once() -> None:
    assert template_variables("#case.number #case.number {{ case.number }} {{ x }} {{ x }}") == [
        "case.number",
        "x",
    ]


def test_literal_hashes_are_not_tags() -> None:
    assert template_variables("Invoice #123, see #1 and #hashtag") == []


def test_template_local_names_are_not_context_names() -> None:
    source = (
        "{% set greeting = 'Hi' %}{{ greeting }} "
        "{% for p in case.payments %}{{ p.amount }} {{ loop.index }}{% endfor %}"
        "{% macro line(label) %}{{ label }}{% endmacro %}{{ line('x') }}"
        "{{ range(3)|list }} {{ x|money(currency) }}"
    )
    assert template_variables(source) == ["case.payments", "currency", "x"]


def test_names_inside_filters_tests_and_conditions_are_found() -> None:
    source = "{{ amount|money(code) }}{% if days > limit %}late{% endif %}{{ a if b is defined }}"
    assert template_variables(source) == ["a", "amount", "b", "code", "days", "limit"]
