"""Which caller-supplied template variables a send or preview accepts
(services.templates.check_variables): top-level names the template version uses."""

from __future__ import annotations

import pytest

from parley.services.errors import Invalid
from parley.services.templates import check_variables
from parley.templates import template_variables

SOURCE = (
    "{{ invoiceNumber }} {{ invoice.total }} {{ rows[0] }} {{ d['a b'] }} "
    "#borrower.first_name #case.outstanding_amount"
)


def _codes(supplied: dict[str, object]) -> dict[str, str]:
    with pytest.raises(Invalid) as caught:
        check_variables(template_variables(SOURCE), supplied)
    return {e.field: e.code for e in caught.value.errors}


def test_top_level_names_the_template_uses_are_accepted() -> None:
    used = template_variables(SOURCE)
    check_variables(used, {"invoiceNumber": 1, "invoice": {"total": 2}, "rows": [3], "d": {}})
    check_variables(used, {})
    check_variables([], {})


def test_unknown_dotted_and_reserved_names_are_each_refused() -> None:
    assert _codes(
        {
            "bogus": 1,
            "invoice.total": 2,  # would be ignored: {{ invoice.total }} reads invoice
            "borrower": {},
            "borrower.first_name": "Eve",  # would be ignored too, and is the case's
            "invoiceNumber": 3,
        }
    ) == {
        "variables.bogus": "unknown_variable",
        "variables.invoice.total": "unknown_variable",
        "variables.borrower": "reserved_variable",
        "variables.borrower.first_name": "reserved_variable",
    }


def test_the_message_names_what_can_be_given_not_the_case_objects() -> None:
    with pytest.raises(Invalid) as caught:
        check_variables(template_variables(SOURCE), {"bogus": 1})
    message = caught.value.errors[0].message
    assert "d, invoice, invoiceNumber, rows" in message and "borrower" not in message
    with pytest.raises(Invalid) as caught:
        check_variables(template_variables("#case.number"), {"x": 1})
    assert "none you can give" in caught.value.errors[0].message
