"""Plausible time zones from every location signal (parley.compliance.zones)."""

from __future__ import annotations

import pytest

from parley.compliance.zones import (
    AU_STATE_ZONES,
    CA_PROVINCE_ZONES,
    US_STATE_ZONES,
    ZoneSet,
    country_zones,
    is_valid_zone,
    plausible_zones,
    region_zones,
)

NY = "America/New_York"
CHI = "America/Chicago"
DEN = "America/Denver"
LA = "America/Los_Angeles"

US_STATES = frozenset(
    {
        *("AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL"),
        *("IN", "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT"),
        *("NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI"),
        *("SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY"),
    }
)


def zones(**kw: str | None) -> ZoneSet:
    args: dict[str, str | None] = {
        "stated": None,
        "country": None,
        "region": None,
        "phone_e164": None,
    }
    default = kw.pop("default_zone", None)
    args.update(kw)
    return plausible_zones(
        stated=args["stated"],
        country=args["country"],
        region=args["region"],
        phone_e164=args["phone_e164"],
        default_zone=default,
    )


# --- region tables -------------------------------------------------------------------


def test_us_table_covers_every_state_dc_and_territories() -> None:
    assert len(US_STATES) == 50
    assert US_STATES | {"DC", "PR", "VI", "GU", "AS", "MP"} == set(US_STATE_ZONES)


@pytest.mark.parametrize(
    "table", [US_STATE_ZONES, CA_PROVINCE_ZONES, AU_STATE_ZONES], ids=["US", "CA", "AU"]
)
def test_every_table_zone_is_a_valid_iana_name(table: dict[str, frozenset[str]]) -> None:
    for region, names in table.items():
        assert names, region
        for name in names:
            assert is_valid_zone(name), (region, name)


@pytest.mark.parametrize(
    ("country", "table", "skip"),
    [
        ("US", US_STATE_ZONES, set()),
        ("CA", CA_PROVINCE_ZONES, set()),
        ("AU", AU_STATE_ZONES, {"Antarctica/Macquarie"}),  # research station, no residents
    ],
)
def test_region_tables_cover_every_zone_of_the_country(
    country: str, table: dict[str, frozenset[str]], skip: set[str]
) -> None:
    """Every zone tzdata lists for the country belongs to some state or province."""
    covered = set().union(*table.values())
    assert country_zones(country) - skip <= covered


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("TX", {CHI, DEN}),
        ("FL", {NY, CHI}),
        ("TN", {NY, CHI}),
        ("KY", {NY, CHI}),
        ("IN", {"America/Indiana/Indianapolis", CHI}),
        ("MI", {"America/Detroit", "America/Menominee"}),
        ("ND", {CHI, DEN}),
        ("SD", {CHI, DEN}),
        ("NE", {CHI, DEN}),
        ("KS", {CHI, DEN}),
        ("ID", {"America/Boise", LA}),
        ("OR", {LA, "America/Boise"}),
        ("AK", {"America/Anchorage", "America/Adak"}),
        ("AZ", {"America/Phoenix", DEN}),  # Navajo Nation observes DST
    ],
)
def test_states_spanning_several_zones_map_to_each(state: str, expected: set[str]) -> None:
    found = region_zones("US", state)
    assert found is not None
    assert expected <= found
    assert len(found) >= 2


@pytest.mark.parametrize(
    ("state", "zone"),
    [("NY", NY), ("CA", LA), ("IL", CHI), ("CO", DEN), ("HI", "Pacific/Honolulu"), ("WA", LA)],
)
def test_single_zone_states(state: str, zone: str) -> None:
    assert region_zones("US", state) == frozenset({zone})


def test_region_accepts_codes_names_and_iso_3166_2() -> None:
    tx = frozenset({CHI, DEN})
    assert region_zones("US", "TX") == tx
    assert region_zones("us", " texas ") == tx
    assert region_zones("US", "US-TX") == tx
    assert region_zones("USA", "Texas") == tx
    assert region_zones("US", "Atlantis") is None
    assert region_zones("DK", "Hovedstaden") is None  # no region table for DK


def test_canada_and_australia() -> None:
    assert region_zones("CA", "ON") == frozenset(
        {"America/Toronto", "America/Winnipeg", "America/Atikokan"}
    )
    assert region_zones("CA", "Quebec") is not None
    assert "America/Regina" in (region_zones("CA", "SK") or set())
    assert region_zones("AU", "NSW") == frozenset(
        {"Australia/Sydney", "Australia/Broken_Hill", "Australia/Lord_Howe"}
    )
    assert region_zones("AU", "Western Australia") == frozenset(
        {"Australia/Perth", "Australia/Eucla"}
    )
    assert region_zones("AU", "QLD") == frozenset({"Australia/Brisbane", "Australia/Lindeman"})


# --- address signal ------------------------------------------------------------------


def test_tx_address_is_central_and_mountain() -> None:
    z = zones(country="US", region="TX")
    assert z.zones == frozenset({CHI, DEN})
    assert z.sources == {"address": [CHI, DEN]}
    assert not z.disagree


def test_single_zone_country_needs_no_region() -> None:
    assert zones(country="DK").zones == frozenset({"Europe/Copenhagen"})
    assert zones(country="gb").zones == frozenset({"Europe/London"})
    assert zones(country="UK").zones == frozenset({"Europe/London"})


def test_multi_zone_country_without_region_table_uses_all_its_zones() -> None:
    z = zones(country="BR", region="SP")
    assert z.zones == country_zones("BR")
    assert "America/Sao_Paulo" in z.zones
    assert "America/Manaus" in z.zones


def test_unknown_region_falls_back_to_the_whole_country_with_a_note() -> None:
    z = zones(country="US", region="Atlantis")
    assert z.zones == country_zones("US")
    assert any("Atlantis" in note for note in z.notes)


# --- phone signal --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "zone"),
    [
        ("+12125550123", NY),  # Manhattan
        ("+13105550123", LA),  # Los Angeles
        ("+13125550123", CHI),  # Chicago
        ("+19155550123", DEN),  # El Paso, TX: Mountain
        ("+4520123456", "Europe/Copenhagen"),
    ],
)
def test_phone_derived_zones(phone: str, zone: str) -> None:
    z = zones(phone_e164=phone)
    assert z.zones == frozenset({zone})
    assert z.sources == {"phone": [zone]}


def test_unparsable_or_invalid_phone_is_ignored_with_a_note() -> None:
    z = zones(phone_e164="not a number", default_zone=NY)
    assert z.zones == frozenset({NY})
    assert z.used_fallback
    assert any("phone" in note for note in z.notes)
    z = zones(phone_e164="+15555555555", country="US", region="NY")
    assert z.zones == frozenset({NY})
    assert any("not a valid number" in note for note in z.notes)


def test_country_wide_mobile_does_not_widen_a_precise_address_in_that_country() -> None:
    # An Australian mobile number carries no region: it says "somewhere in Australia".
    z = zones(country="AU", region="VIC", phone_e164="+61412345678")
    assert z.zones == frozenset({"Australia/Melbourne"})
    assert z.sources["phone"] == []
    assert any("country-wide" in note for note in z.notes)


def test_toll_free_number_with_a_state_less_us_address() -> None:
    z = zones(country="US", phone_e164="+18005550100")
    assert z.zones == country_zones("US")  # not every NANPA zone from Guam to Newfoundland


def test_country_wide_phone_in_another_country_disagrees_and_is_added() -> None:
    z = zones(country="US", region="NY", phone_e164="+447911123456")
    assert NY in z.zones
    assert "Europe/London" in z.zones
    assert z.disagree


def test_strict_union_adds_coarse_signals_too() -> None:
    z = plausible_zones(
        stated=None,
        country="AU",
        region="VIC",
        phone_e164="+61412345678",
        strict_union=True,
    )
    assert {"Australia/Melbourne", "Australia/Perth", "Australia/Lord_Howe"} <= z.zones


# --- combining signals ---------------------------------------------------------------


def test_union_when_address_and_phone_disagree() -> None:
    """Regulators faulted area-code-only dialers: a NY address with an LA phone is both."""
    z = zones(country="US", region="NY", phone_e164="+13105550123")
    assert z.zones == frozenset({NY, LA})
    assert z.sources == {"address": [NY], "phone": [LA]}
    assert z.disagree
    assert z.as_record() == {
        "zones": [LA, NY],
        "sources": {"address": [NY], "phone": [LA]},
        "disagree": True,
        "notes": [],
    }


def test_stated_zone_is_one_more_signal_in_the_union() -> None:
    z = zones(stated="America/Chicago", country="US", region="TX", phone_e164="+12125550123")
    assert z.zones == frozenset({CHI, DEN, NY})
    assert z.sources == {"stated": [CHI], "address": [CHI, DEN], "phone": [NY]}


def test_agreeing_signals_do_not_disagree() -> None:
    z = zones(stated=NY, country="US", region="NY", phone_e164="+12125550123")
    assert z.zones == frozenset({NY})
    assert not z.disagree


def test_stated_zone_validation() -> None:
    assert zones(stated="america/chicago").zones == frozenset({CHI})
    z = zones(stated="Mars/Olympus_Mons", country="US", region="CA")
    assert z.zones == frozenset({LA})
    assert "stated" not in z.sources
    assert any("Mars/Olympus_Mons" in note for note in z.notes)


def test_fallback_to_the_caller_default_when_no_signal_yields_a_zone() -> None:
    z = zones(default_zone="America/Chicago")
    assert z.zones == frozenset({CHI})
    assert z.sources == {"default": [CHI]}
    assert z.used_fallback
    z = zones(stated="nowhere", country="ZZ", default_zone=NY)
    assert z.zones == frozenset({NY})
    assert z.used_fallback


def test_default_is_not_used_when_a_signal_yields_zones() -> None:
    z = zones(country="US", region="CA", default_zone=NY)
    assert z.zones == frozenset({LA})
    assert not z.used_fallback


def test_no_signal_and_no_default_is_empty() -> None:
    assert zones().zones == frozenset()


def test_invalid_default_is_rejected() -> None:
    with pytest.raises(ValueError, match="default_zone"):
        zones(default_zone="Nowhere/Special")


def test_zoneset_of_validates() -> None:
    assert ZoneSet.of(NY, LA).zones == frozenset({NY, LA})
    with pytest.raises(ValueError):
        ZoneSet.of("Nowhere/Special")
