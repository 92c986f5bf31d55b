"""Invalid templates and sandbox escapes fail with clear errors."""

from __future__ import annotations

import jinja2
import pytest

from parley.templates import (
    InvalidTemplate,
    RenderError,
    TemplateError,
    UnsafeTemplate,
    render,
    template_variables,
    validate,
)


def test_syntax_error_carries_the_line() -> None:
    source = "Dear #borrower.first_name,\nyour balance\nis {{ case.outstanding_amount"
    with pytest.raises(InvalidTemplate) as caught:
        render(source, {})
    error = caught.value
    assert error.lineno == 3
    assert "line 3" in str(error)
    assert "{{ case.outstanding_amount" in str(error)
    assert isinstance(error, jinja2.TemplateSyntaxError)
    assert isinstance(error, TemplateError)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("source", "lineno", "fragment"),
    [
        ("{% if x %}never closed", 1, "endif"),
        ("a\n{{ x|no_such_filter }}", 2, "no_such_filter"),
        ("ok\nok\n{% for %}", 3, "for"),
        ("{{ x ]] }}", 1, "]"),
    ],
)
def test_validate_rejects_broken_templates(source: str, lineno: int, fragment: str) -> None:
    with pytest.raises(InvalidTemplate) as caught:
        validate(source)
    assert caught.value.lineno == lineno
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "probe",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ borrower.__dict__ }}",
        "{{ x['__class__'] }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ x._private }}",
        "{{ x|_parley_attr('__class__', 'x') }}",
    ],
)
def test_private_attribute_probes_are_rejected_by_name(probe: str) -> None:
    with pytest.raises(InvalidTemplate) as at_validation:
        validate(probe)
    with pytest.raises(InvalidTemplate) as at_render:
        render(probe, {"x": "", "borrower": {}})
    for caught in (at_validation, at_render):
        assert "is not accessible in templates" in str(caught.value)
        assert caught.value.lineno == 1


def test_probe_error_names_the_attribute() -> None:
    with pytest.raises(InvalidTemplate, match="'__class__'"):
        render("Hi\n{{ ''.__class__ }}", {})


def test_private_attributes_reached_at_run_time_are_blocked() -> None:
    with pytest.raises(UnsafeTemplate, match="__class__"):
        render("{{ obj[key] }}", {"obj": "", "key": "__class__"})


def test_format_strings_cannot_reach_private_attributes() -> None:
    with pytest.raises(UnsafeTemplate):
        render('{{ "{0.__class__}".format(x) }}', {"x": 1})


def test_templates_cannot_modify_the_context() -> None:
    context = {"case": {"number": "C-1"}, "tags": ["a"]}
    with pytest.raises(UnsafeTemplate):
        render("{{ case.update({'number': 'X'}) }}", context)
    with pytest.raises(UnsafeTemplate):
        render("{{ tags.append('b') }}", context)
    assert context == {"case": {"number": "C-1"}, "tags": ["a"]}


@pytest.mark.parametrize(
    "source",
    ["{{ 'a' * 1000000 }}", "{{ [0] * 1000000 }}", "{{ 10 ** 1000000 }}", "{{ 7 ** 99999 }}"],
)
def test_huge_values_are_refused(source: str) -> None:
    validate(source)  # compiles (no constant folding of huge values at compile time) ...
    with pytest.raises(UnsafeTemplate, match="too large"):
        render(source, {})  # ... and is refused when it would run


def test_reasonable_arithmetic_still_works() -> None:
    assert render("{{ '-' * 5 }} {{ 2 ** 10 }} {{ 3 * 4 }} {{ [1] * 3 }}", {}) == (
        "----- 1024 12 [1, 1, 1]"
    )


def test_huge_ranges_are_refused() -> None:
    with pytest.raises(RenderError, match="Range too big"):
        render("{{ range(10000000)|length }}", {})


@pytest.mark.parametrize(
    ("source", "statement"),
    [
        ("{% include 'other.txt' %}", "include"),
        ("{% extends 'base.txt' %}", "extends"),
        ("{% import 'macros.txt' as m %}", "import"),
        ("{% from 'macros.txt' import m %}", "from ... import"),
    ],
)
def test_templates_cannot_load_other_templates(source: str, statement: str) -> None:
    with pytest.raises(InvalidTemplate, match=f"{{% {statement} %}} is not supported"):
        validate(source)


def test_invalid_templates_are_rejected_by_template_variables_too() -> None:
    with pytest.raises(InvalidTemplate):
        template_variables("{{ ''.__class__ }}")
    with pytest.raises(InvalidTemplate):
        template_variables("{% if %}")


def test_other_render_failures_are_template_errors() -> None:
    with pytest.raises(RenderError, match="division by zero"):
        render("{{ 1 / n }}", {"n": 0})
