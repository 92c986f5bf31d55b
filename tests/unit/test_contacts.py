"""Phone and email normalization: what is accepted, how it is stored, why it is refused."""

from __future__ import annotations

import pytest

from parley.services.contacts import (
    ContactPointInput,
    normalize_email,
    normalize_phone,
    validate_input,
)
from parley.services.errors import Invalid


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+45 20 12 34 56", None, "+4520123456"),
        ("20 12 34 56", "DK", "+4520123456"),
        ("20123456", "dk", "+4520123456"),  # region codes are case-insensitive
        ("+1 (202) 555-0143", None, "+12025550143"),
        ("(202) 555-0143", "US", "+12025550143"),
        ("+44 7911 123456", "DK", "+447911123456"),  # an explicit +code wins over the region
        ("  +4520123456  ", None, "+4520123456"),
    ],
)
def test_normalize_phone_returns_e164(raw: str, region: str | None, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region", "code", "fragment"),
    [
        ("hello", None, "not_a_number", "not a phone number"),
        ("20123456", None, "missing_country_code", "country code"),
        ("+999123456", None, "missing_country_code", "country code"),
        ("12345678", "DK", "invalid_for_region", "region DK"),
        ("+4512", None, "invalid_for_region", "region DK"),
        ("555-0100", "US", "invalid_for_region", "region US"),
        ("", None, "required", "empty"),
        ("+45 20\n12 34 56", None, "not_a_number", "not a phone number"),
    ],
)
def test_normalize_phone_names_field_and_reason(
    raw: str, region: str | None, code: str, fragment: str
) -> None:
    with pytest.raises(Invalid) as info:
        normalize_phone(raw, region, field="contactPoints.0.value")
    [error] = info.value.errors
    assert error.field == "contactPoints.0.value"
    assert error.code == code
    assert fragment in error.message
    assert info.value.status == 422


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Bob@Example.COM", "Bob@example.com"),  # the local part is case-sensitive; keep it
        ("  pat.doe@example.org ", "pat.doe@example.org"),
        ("ü@bücher.de", "ü@bücher.de"),
        ("first+tag@sub.example.co.uk", "first+tag@sub.example.co.uk"),
    ],
)
def test_normalize_email(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("Bob <bob@example.com>", "display name"),
        ("bob@example.com\r\nBcc: eve@example.com", "line breaks"),
        ("bob@example.com\n", "line breaks"),  # a trailing newline survives no strip
        ("bob", "not a valid email address"),
        ("bob@localhost", "not a valid email address"),
        ("bob@exa mple.com", "not a valid email address"),
        ("", "empty"),
    ],
)
def test_normalize_email_refuses(raw: str, fragment: str) -> None:
    with pytest.raises(Invalid) as info:
        normalize_email(raw, field="to")
    [error] = info.value.errors
    assert error.field == "to"
    assert fragment in error.message


def test_trailing_newline_is_refused_not_stripped() -> None:
    # strip() would silently remove it; header injection must be refused instead.
    with pytest.raises(Invalid):
        normalize_email("bob@example.com\r\n")


def test_validate_input_collects_every_error_under_the_prefix() -> None:
    cp = ContactPointInput(kind="phone", value="nope", label="pager", source="rumour")
    with pytest.raises(Invalid) as info:
        validate_input(cp, "DK", prefix="contactPoints.2.")
    fields = sorted(e.field for e in info.value.errors)
    assert fields == ["contactPoints.2.label", "contactPoints.2.source", "contactPoints.2.value"]


def test_validate_input_normalizes_with_the_region() -> None:
    cp = ContactPointInput(kind="phone", value="20 12 34 56", label="mobile")
    assert validate_input(cp, "DK").value == "+4520123456"
    email = ContactPointInput(kind="email", value="Pat@EXAMPLE.org")
    assert validate_input(email, None).value == "Pat@example.org"


def test_lenient_lookup_accepts_plausible_but_unassigned_numbers() -> None:
    # The seed document's SMS example: right length for Denmark, but not an assigned range.
    with pytest.raises(Invalid):
        normalize_phone("+4512345678")
    assert normalize_phone("+45 12 34 56 78", strict=False) == "+4512345678"
    # Lenient is not anything-goes: wrong length or no such country still fail.
    for raw in ("+4512", "+999123456", "hello"):
        with pytest.raises(Invalid):
            normalize_phone(raw, strict=False)
