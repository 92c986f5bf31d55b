"""Rendering: merge tags and variables, escaping, caching, per-render state."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from parley.domain.money import Money
from parley.templates import (
    InvalidTemplate,
    MissingVariables,
    clear_template_cache,
    find_tags,
    render,
    template_cache_info,
)
from parley.templates.rendering import COMPILED_CACHE_SIZE

CONTEXT = {
    "borrower": {"first_name": "Ana", "last_name": "Silva"},
    "case": {
        "number": "C-1042",
        "creditor": "Nordbank",
        "outstanding_amount": Money(Decimal("1234.50"), "USD"),
    },
    "agent": {"name": "Sam Agent"},
    "organization": {"name": "Acme Collections"},
    "invoiceNumber": "INV-77",
}


def test_tags_are_replaced_from_the_context() -> None:
    text = render("Hi #borrower.first_name, about case #case.number.", CONTEXT)
    assert text == "Hi Ana, about case C-1042."


def test_tags_and_variables_mix_in_one_template() -> None:
    source = "{{ borrower.first_name }} / #borrower.last_name / {{ invoiceNumber }} / #agent.name"
    assert render(source, CONTEXT) == "Ana / Silva / INV-77 / Sam Agent"


def test_deep_tags_reach_attributes_of_values() -> None:
    assert render("#case.outstanding_amount.currency", CONTEXT) == "USD"


@pytest.mark.parametrize(
    "literal",
    [
        "Invoice #123",
        "#1",
        "Call #5.30",
        "#hashtag",
        "#borrower",
        "# borrower.first_name",
        "#.first_name",
        "#not.a_tag",  # 'not' is an operator in Jinja, so never a context root
        "C#",
    ],
)
def test_hash_without_the_tag_shape_stays_literal(literal: str) -> None:
    assert render(f"Ref {literal} end", CONTEXT) == f"Ref {literal} end"


def test_sentence_ending_after_a_tag_keeps_its_full_stop() -> None:
    assert render("Thanks, #agent.name.", CONTEXT) == "Thanks, Sam Agent."


def test_hash_right_before_a_tag_stays_literal() -> None:
    assert render("##case.number", CONTEXT) == "#C-1042"


def test_tag_text_inside_an_expression_is_a_plain_string() -> None:
    assert render('{{ "#case.number" }} = #case.number', CONTEXT) == "#case.number = C-1042"


def test_tags_work_inside_blocks_and_loops() -> None:
    source = "{% for p in payments %}#p.amount;{% endfor %}{% if agent %}#agent.name{% endif %}"
    context = {**CONTEXT, "payments": [{"amount": "10"}, {"amount": "20"}]}
    assert render(source, context) == "10;20;Sam Agent"


def test_find_tags_lists_tag_paths_in_order() -> None:
    assert find_tags("Hi #borrower.first_name, invoice #123, #case.number.") == [
        "borrower.first_name",
        "case.number",
    ]


def test_mapping_keys_win_over_dict_methods() -> None:
    context = {"case": {"items": "3 letters", "values": "high"}}
    assert render("#case.items / {{ case.values }}", context) == "3 letters / high"


def test_dict_methods_remain_usable_when_no_such_key() -> None:
    assert render("{{ case.items()|list|length }}", {"case": {"a": 1, "b": 2}}) == "2"


def test_html_bodies_escape_values_but_not_the_template() -> None:
    context = {"note": "<script>alert(1)</script>", "case": {"number": "A&B"}}
    html = render("<p>{{ note }} #case.number</p>", context, html=True)
    assert html == "<p>&lt;script&gt;alert(1)&lt;/script&gt; A&amp;B</p>"


def test_text_bodies_are_not_escaped() -> None:
    context = {"note": "<b>5 > 3</b>", "case": {"number": "A&B"}}
    assert render("{{ note }} #case.number", context) == "<b>5 > 3</b> A&B"


def test_trailing_newline_is_kept() -> None:
    assert render("Hi #borrower.first_name\n", CONTEXT) == "Hi Ana\n"


def test_integers_are_printed_without_grouping() -> None:
    # Case numbers and day counts are identifiers, not amounts.
    assert render("{{ n }} {{ d }}", {"n": 1234567, "d": 45}) == "1234567 45"


def test_compiled_templates_are_reused() -> None:
    clear_template_cache()
    source = "Cache probe #borrower.first_name"
    for _ in range(5):
        assert render(source, CONTEXT) == "Cache probe Ana"
    # An equal source built at run time is the same cache entry.
    assert render("".join(["Cache probe ", "#borrower.first_name"]), CONTEXT) == "Cache probe Ana"
    info = template_cache_info()
    assert (info.misses, info.hits, info.size) == (1, 5, 1)


def test_html_and_text_compilations_are_cached_separately() -> None:
    clear_template_cache()
    assert render("{{ x }}", {"x": "<i>"}) == "<i>"
    assert render("{{ x }}", {"x": "<i>"}, html=True) == "&lt;i&gt;"
    assert template_cache_info().misses == 2


def test_compile_cache_is_bounded() -> None:
    clear_template_cache()
    for index in range(COMPILED_CACHE_SIZE + 10):
        assert render(f"{index}:{{{{ x }}}}", {"x": "y"}) == f"{index}:y"
    info = template_cache_info()
    assert info.size == info.max_size == COMPILED_CACHE_SIZE


def test_invalid_templates_are_not_cached_as_valid() -> None:
    for _ in range(2):
        with pytest.raises(InvalidTemplate):
            render("{{ broken", {})


def test_a_failed_render_leaves_no_state_behind() -> None:
    source = "Hi #borrower.first_name"
    with pytest.raises(MissingVariables):
        render(source, {"borrower": {}}, locale="de_DE")
    assert render(source, CONTEXT) == "Hi Ana"
    assert render("{{ amount }}", {"amount": Decimal("1234.5")}) == "1,234.5"


def test_concurrent_renders_keep_their_own_locale_and_missing_names() -> None:
    source = "#case.outstanding_amount"
    expected = {"en_US": "$1,234.50", "de_DE": "1.234,50 $", "da_DK": "1.234,50 US$"}
    failures: list[str] = []
    barrier = threading.Barrier(len(expected) + 1)

    def work(locale: str) -> None:
        barrier.wait()
        for _ in range(300):
            text = render(source, CONTEXT, locale=locale)
            if text != expected[locale]:
                failures.append(f"{locale}: {text!r}")

    def missing() -> None:
        barrier.wait()
        for _ in range(300):
            try:
                render(source, {"case": {}}, locale="de_DE")
            except MissingVariables as exc:
                if exc.names != ["case.outstanding_amount"]:
                    failures.append(repr(exc.names))
            else:
                failures.append("missing value not reported")

    threads = [threading.Thread(target=work, args=(locale,)) for locale in expected]
    threads.append(threading.Thread(target=missing))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
