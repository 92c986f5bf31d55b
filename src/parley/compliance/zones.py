"""Plausible IANA time zones for a borrower, from every location signal.

Regulation F (12 CFR 1006.6(b)(1)) measures a convenient time in *local time at the
consumer's location*; when the collector's information about that location is conflicting
or ambiguous, the time must be convenient in every plausible location. Regulators faulted
dialers that derived the zone from the phone's area code alone, so this module combines
every signal Parley has:

* ``stated``  -- a time zone the borrower (or the case data) states, e.g. the
  ``contactHours.timezone`` preference; accepted when it is a valid IANA name.
* address     -- ``country`` (ISO 3166-1 alpha-2) and ``region`` (state / province /
  territory code or name). Countries spanning several zones are resolved per region for
  the US (all states, DC and the inhabited territories; states that span two zones map to
  both, e.g. TX -> Central + Mountain), Canada (provinces and territories) and Australia
  (states and territories). Every other country maps to its zones in the ``zone.tab``
  file shipped with the ``tzdata`` package.
* ``phone_e164`` -- ``phonenumbers.timezone.time_zones_for_number``.

Each signal is *precise* (a stated zone; an address with a resolved region or in a
single-zone country; a geographic phone number whose prefix maps to specific zones) or
*coarse* (it only places the borrower somewhere in a country: an address in a multi-zone
country without a recognised region; a phone number that phonenumbers can only map to
its whole country calling code, such as most mobile numbers outside North America, or
toll-free numbers).

The rule for combining them (documented and tested):

1. **Disagreement -> union.** The plausible zones are the UNION of the zones of every
   precise signal, so a contact time must be allowed in each of them (NY address and LA
   phone -> both zones).
2. A coarse signal is added to the union too, **unless** another signal places the
   borrower more precisely inside the countries it covers: a precise signal in one of
   them, or a coarse signal covering strictly fewer countries (a US address without a
   state versus a +1 toll-free number, which covers all of NANPA). "Somewhere in the US"
   does not contradict "Texas", it only fails to narrow it, and adding every zone from
   Guam to Newfoundland for a toll-free number would leave no time to contact anyone. A
   coarse signal for a *different* country (a +44 mobile with a US address) does disagree
   and is added. ``strict_union=True`` adds every coarse signal regardless.
3. **No signal -> fallback.** When no signal yields a zone, the caller-given
   ``default_zone`` is used (recorded as source ``"default"``); without one the set is
   empty and the contact-hours rule refuses to allow contact.

``ZoneSet.sources`` records which signal contributed which zones and ``notes`` records
inputs that were ignored (invalid names, unknown regions, unparsable numbers), so the
decision can be explained from the stored evidence.

The module is pure apart from reading ``zone.tab`` from the installed ``tzdata`` package
once (cached); it does no network or database access.
"""

from __future__ import annotations

import functools
import importlib.resources
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from phonenumbers import timezone as phone_tz

__all__ = [
    "AU_STATE_ZONES",
    "CA_PROVINCE_ZONES",
    "US_STATE_ZONES",
    "ZoneSet",
    "country_zones",
    "is_valid_zone",
    "plausible_zones",
    "region_zones",
]

# --- region tables -------------------------------------------------------------------
# Zone names follow tzdata's zone.tab. A state spanning several zones lists each of them.
# Where a town officially or customarily keeps the neighbouring zone, that zone is listed
# too (conservative: a larger set only narrows the allowed window).

_EASTERN = "America/New_York"
_CENTRAL = "America/Chicago"
_MOUNTAIN = "America/Denver"
_PACIFIC = "America/Los_Angeles"

US_STATE_ZONES: dict[str, frozenset[str]] = {
    # Phenix City area customarily keeps Eastern time.
    "AL": frozenset({_CENTRAL, _EASTERN}),
    "AK": frozenset(
        {
            "America/Anchorage",
            "America/Juneau",
            "America/Sitka",
            "America/Metlakatla",
            "America/Yakutat",
            "America/Nome",
            "America/Adak",  # Aleutians west of 169.5W: Hawaii-Aleutian time
        }
    ),
    # Arizona keeps MST all year, except the Navajo Nation, which observes DST.
    "AZ": frozenset({"America/Phoenix", _MOUNTAIN}),
    "AR": frozenset({_CENTRAL}),
    "CA": frozenset({_PACIFIC}),
    "CO": frozenset({_MOUNTAIN}),
    "CT": frozenset({_EASTERN}),
    "DE": frozenset({_EASTERN}),
    "DC": frozenset({_EASTERN}),
    # Panhandle west of the Apalachicola River is Central.
    "FL": frozenset({_EASTERN, _CENTRAL}),
    "GA": frozenset({_EASTERN}),
    "HI": frozenset({"Pacific/Honolulu"}),
    # South is Mountain (America/Boise), the northern panhandle Pacific.
    "ID": frozenset({"America/Boise", _PACIFIC}),
    "IL": frozenset({_CENTRAL}),
    # Most of Indiana is Eastern; the NW (Gary) and SW (Evansville) corners are Central.
    "IN": frozenset(
        {
            "America/Indiana/Indianapolis",
            "America/Indiana/Vincennes",
            "America/Indiana/Winamac",
            "America/Indiana/Marengo",
            "America/Indiana/Petersburg",
            "America/Indiana/Vevay",
            "America/Indiana/Tell_City",
            "America/Indiana/Knox",
            _CENTRAL,
        }
    ),
    "IA": frozenset({_CENTRAL}),
    # Four western counties (Sherman, Wallace, Greeley, Hamilton) are Mountain.
    "KS": frozenset({_CENTRAL, _MOUNTAIN}),
    # Eastern half Eastern, western half Central.
    "KY": frozenset(
        {_EASTERN, "America/Kentucky/Louisville", "America/Kentucky/Monticello", _CENTRAL}
    ),
    "LA": frozenset({_CENTRAL}),
    "ME": frozenset({_EASTERN}),
    "MD": frozenset({_EASTERN}),
    "MA": frozenset({_EASTERN}),
    # Four Upper Peninsula counties bordering Wisconsin are Central.
    "MI": frozenset({"America/Detroit", "America/Menominee"}),
    "MN": frozenset({_CENTRAL}),
    "MS": frozenset({_CENTRAL}),
    "MO": frozenset({_CENTRAL}),
    "MT": frozenset({_MOUNTAIN}),
    # Western Nebraska (panhandle) is Mountain.
    "NE": frozenset({_CENTRAL, _MOUNTAIN}),
    # West Wendover is legally Mountain; Jackpot and Owyhee keep Mountain customarily.
    "NV": frozenset({_PACIFIC, _MOUNTAIN}),
    "NH": frozenset({_EASTERN}),
    "NJ": frozenset({_EASTERN}),
    "NM": frozenset({_MOUNTAIN}),
    "NY": frozenset({_EASTERN}),
    "NC": frozenset({_EASTERN}),
    # Southwest North Dakota is Mountain.
    "ND": frozenset(
        {
            _CENTRAL,
            "America/North_Dakota/Center",
            "America/North_Dakota/New_Salem",
            "America/North_Dakota/Beulah",
            _MOUNTAIN,
        }
    ),
    "OH": frozenset({_EASTERN}),
    # Kenton (Cimarron County) customarily keeps Mountain time.
    "OK": frozenset({_CENTRAL, _MOUNTAIN}),
    # Malheur County is Mountain (America/Boise).
    "OR": frozenset({_PACIFIC, "America/Boise"}),
    "PA": frozenset({_EASTERN}),
    "RI": frozenset({_EASTERN}),
    "SC": frozenset({_EASTERN}),
    # West river South Dakota is Mountain.
    "SD": frozenset({_CENTRAL, _MOUNTAIN}),
    # East Tennessee is Eastern, Middle and West Tennessee Central.
    "TN": frozenset({_EASTERN, _CENTRAL}),
    # El Paso and Hudspeth counties (and customarily part of Culberson) are Mountain.
    "TX": frozenset({_CENTRAL, _MOUNTAIN}),
    "UT": frozenset({_MOUNTAIN}),
    "VT": frozenset({_EASTERN}),
    "VA": frozenset({_EASTERN}),
    "WA": frozenset({_PACIFIC}),
    "WV": frozenset({_EASTERN}),
    "WI": frozenset({_CENTRAL}),
    "WY": frozenset({_MOUNTAIN}),
    # Inhabited territories (also ISO countries of their own).
    "PR": frozenset({"America/Puerto_Rico"}),
    "VI": frozenset({"America/St_Thomas"}),
    "GU": frozenset({"Pacific/Guam"}),
    "AS": frozenset({"Pacific/Pago_Pago"}),
    "MP": frozenset({"Pacific/Saipan"}),
}

US_STATE_NAMES: dict[str, str] = {
    "ALABAMA": "AL",
    "ALASKA": "AK",
    "ARIZONA": "AZ",
    "ARKANSAS": "AR",
    "CALIFORNIA": "CA",
    "COLORADO": "CO",
    "CONNECTICUT": "CT",
    "DELAWARE": "DE",
    "DISTRICT OF COLUMBIA": "DC",
    "WASHINGTON DC": "DC",
    "WASHINGTON D.C.": "DC",
    "FLORIDA": "FL",
    "GEORGIA": "GA",
    "HAWAII": "HI",
    "IDAHO": "ID",
    "ILLINOIS": "IL",
    "INDIANA": "IN",
    "IOWA": "IA",
    "KANSAS": "KS",
    "KENTUCKY": "KY",
    "LOUISIANA": "LA",
    "MAINE": "ME",
    "MARYLAND": "MD",
    "MASSACHUSETTS": "MA",
    "MICHIGAN": "MI",
    "MINNESOTA": "MN",
    "MISSISSIPPI": "MS",
    "MISSOURI": "MO",
    "MONTANA": "MT",
    "NEBRASKA": "NE",
    "NEVADA": "NV",
    "NEW HAMPSHIRE": "NH",
    "NEW JERSEY": "NJ",
    "NEW MEXICO": "NM",
    "NEW YORK": "NY",
    "NORTH CAROLINA": "NC",
    "NORTH DAKOTA": "ND",
    "OHIO": "OH",
    "OKLAHOMA": "OK",
    "OREGON": "OR",
    "PENNSYLVANIA": "PA",
    "RHODE ISLAND": "RI",
    "SOUTH CAROLINA": "SC",
    "SOUTH DAKOTA": "SD",
    "TENNESSEE": "TN",
    "TEXAS": "TX",
    "UTAH": "UT",
    "VERMONT": "VT",
    "VIRGINIA": "VA",
    "WASHINGTON": "WA",
    "WEST VIRGINIA": "WV",
    "WISCONSIN": "WI",
    "WYOMING": "WY",
    "PUERTO RICO": "PR",
    "U.S. VIRGIN ISLANDS": "VI",
    "US VIRGIN ISLANDS": "VI",
    "VIRGIN ISLANDS": "VI",
    "GUAM": "GU",
    "AMERICAN SAMOA": "AS",
    "NORTHERN MARIANA ISLANDS": "MP",
}

CA_PROVINCE_ZONES: dict[str, frozenset[str]] = {
    "AB": frozenset({"America/Edmonton"}),
    "BC": frozenset(
        {
            "America/Vancouver",
            "America/Edmonton",  # East Kootenay
            "America/Creston",
            "America/Dawson_Creek",
            "America/Fort_Nelson",
        }
    ),
    "MB": frozenset({"America/Winnipeg"}),
    "NB": frozenset({"America/Moncton"}),
    "NL": frozenset({"America/St_Johns", "America/Goose_Bay"}),
    "NS": frozenset({"America/Halifax", "America/Glace_Bay"}),
    "NT": frozenset({"America/Edmonton", "America/Inuvik"}),
    "NU": frozenset(
        {
            "America/Iqaluit",
            "America/Rankin_Inlet",
            "America/Resolute",
            "America/Cambridge_Bay",
            "America/Atikokan",  # Coral Harbour
        }
    ),
    # Northwestern Ontario (Kenora, Rainy River) is Central; Atikokan keeps EST.
    "ON": frozenset({"America/Toronto", "America/Winnipeg", "America/Atikokan"}),
    "PE": frozenset({"America/Halifax"}),
    # Lower North Shore keeps AST (Blanc-Sablon); Magdalen Islands are on Atlantic time.
    "QC": frozenset({"America/Toronto", "America/Blanc-Sablon", "America/Halifax"}),
    # Lloydminster keeps Alberta's time.
    "SK": frozenset({"America/Regina", "America/Swift_Current", "America/Edmonton"}),
    "YT": frozenset({"America/Whitehorse", "America/Dawson"}),
}

CA_PROVINCE_NAMES: dict[str, str] = {
    "ALBERTA": "AB",
    "BRITISH COLUMBIA": "BC",
    "MANITOBA": "MB",
    "NEW BRUNSWICK": "NB",
    "NEWFOUNDLAND AND LABRADOR": "NL",
    "NEWFOUNDLAND": "NL",
    "NOVA SCOTIA": "NS",
    "NORTHWEST TERRITORIES": "NT",
    "NUNAVUT": "NU",
    "ONTARIO": "ON",
    "PRINCE EDWARD ISLAND": "PE",
    "QUEBEC": "QC",
    "QUÉBEC": "QC",
    "SASKATCHEWAN": "SK",
    "YUKON": "YT",
}

AU_STATE_ZONES: dict[str, frozenset[str]] = {
    "ACT": frozenset({"Australia/Sydney"}),
    # Broken Hill keeps South Australian time; Lord Howe Island has a 30-minute DST.
    "NSW": frozenset({"Australia/Sydney", "Australia/Broken_Hill", "Australia/Lord_Howe"}),
    "NT": frozenset({"Australia/Darwin"}),
    "QLD": frozenset({"Australia/Brisbane", "Australia/Lindeman"}),
    "SA": frozenset({"Australia/Adelaide"}),
    "TAS": frozenset({"Australia/Hobart"}),
    "VIC": frozenset({"Australia/Melbourne"}),
    "WA": frozenset({"Australia/Perth", "Australia/Eucla"}),
    "JBT": frozenset({"Australia/Sydney"}),
}

AU_STATE_NAMES: dict[str, str] = {
    "AUSTRALIAN CAPITAL TERRITORY": "ACT",
    "NEW SOUTH WALES": "NSW",
    "NORTHERN TERRITORY": "NT",
    "QUEENSLAND": "QLD",
    "SOUTH AUSTRALIA": "SA",
    "TASMANIA": "TAS",
    "VICTORIA": "VIC",
    "WESTERN AUSTRALIA": "WA",
    "JERVIS BAY TERRITORY": "JBT",
}

_REGION_TABLES: dict[str, tuple[dict[str, frozenset[str]], dict[str, str]]] = {
    "US": (US_STATE_ZONES, US_STATE_NAMES),
    "CA": (CA_PROVINCE_ZONES, CA_PROVINCE_NAMES),
    "AU": (AU_STATE_ZONES, AU_STATE_NAMES),
}

# Common non-ISO spellings seen in address data.
_COUNTRY_ALIASES: dict[str, str] = {"UK": "GB", "USA": "US", "CAN": "CA", "AUS": "AU"}


# --- tzdata lookups ------------------------------------------------------------------


@functools.cache
def _available() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@functools.cache
def _lowercase_names() -> dict[str, str]:
    return {name.lower(): name for name in _available()}


def is_valid_zone(name: str) -> bool:
    """True when ``name`` is an IANA zone name known to the installed tz database."""
    return name in _available()


def _read_tab(filename: str) -> list[tuple[list[str], str]]:
    text = importlib.resources.files("tzdata").joinpath("zoneinfo", filename).read_text("utf-8")
    rows: list[tuple[list[str], str]] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) >= 3:
            rows.append((cols[0].split(","), cols[2]))
    return rows


@functools.cache
def _country_table() -> dict[str, frozenset[str]]:
    """ISO country code -> zones, from tzdata's zone.tab (one row per country and zone)."""
    table: dict[str, set[str]] = {}
    for countries, zone in _read_tab("zone.tab"):
        for cc in countries:
            table.setdefault(cc, set()).add(zone)
    return {cc: frozenset(zones) for cc, zones in table.items()}


@functools.cache
def _zone_countries() -> dict[str, frozenset[str]]:
    """Zone -> ISO country codes, from zone.tab and zone1970.tab."""
    table: dict[str, set[str]] = {}
    for filename in ("zone.tab", "zone1970.tab"):
        for countries, zone in _read_tab(filename):
            table.setdefault(zone, set()).update(countries)
    for cc, mapping in _REGION_TABLES.items():
        for zones in mapping[0].values():
            for zone in zones:
                table.setdefault(zone, set()).add(cc)
    return {zone: frozenset(ccs) for zone, ccs in table.items()}


def _normalise_country(country: str | None) -> str | None:
    if country is None:
        return None
    cc = country.strip().upper()
    if not cc:
        return None
    return _COUNTRY_ALIASES.get(cc, cc)


def country_zones(country: str) -> frozenset[str]:
    """All zones tzdata lists for an ISO 3166-1 alpha-2 country (empty if unknown)."""
    cc = _normalise_country(country)
    return _country_table().get(cc, frozenset()) if cc else frozenset()


def region_zones(country: str, region: str) -> frozenset[str] | None:
    """Zones of a state/province/territory, or None when the region is not in a table.

    ``region`` may be a code ("TX", "US-TX") or an English name ("Texas"), any case.
    """
    cc = _normalise_country(country)
    if cc is None or cc not in _REGION_TABLES:
        return None
    codes, names = _REGION_TABLES[cc]
    key = region.strip().upper()
    if key.startswith(cc + "-"):
        key = key[len(cc) + 1 :]
    key = names.get(key, key)
    return codes.get(key)


# --- the zone set --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZoneSet:
    """The plausible zones of one borrower, with the evidence of where they came from.

    ``sources`` maps a signal name ("stated", "address", "phone", "default") to the zones
    it yielded (sorted); ``notes`` lists inputs that were ignored and why.
    """

    zones: frozenset[str]
    sources: dict[str, list[str]] = field(default_factory=dict, hash=False)
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, *zones: str) -> ZoneSet:
        """A zone set given directly (tests, or zones resolved elsewhere)."""
        for zone in zones:
            if not is_valid_zone(zone):
                raise ValueError(f"not an IANA time zone: {zone!r}")
        return cls(frozenset(zones), {"given": sorted(zones)})

    @property
    def disagree(self) -> bool:
        """True when the contributing signals did not all yield the same zones."""
        sets = [frozenset(z) for name, z in self.sources.items() if z and name != "default"]
        return len(set(sets)) > 1

    @property
    def used_fallback(self) -> bool:
        return "default" in self.sources

    def as_record(self) -> dict[str, Any]:
        return {
            "zones": sorted(self.zones),
            "sources": {name: list(zones) for name, zones in self.sources.items()},
            "disagree": self.disagree,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class _Signal:
    name: str
    zones: frozenset[str]
    countries: frozenset[str]
    precise: bool


def _stated_signal(stated: str | None, notes: list[str]) -> _Signal | None:
    if stated is None or not stated.strip():
        return None
    name = stated.strip()
    canonical = name if is_valid_zone(name) else _lowercase_names().get(name.lower())
    if canonical is None:
        notes.append(f"stated: {name!r} is not an IANA time zone; ignored")
        return None
    countries = _zone_countries().get(canonical, frozenset())
    return _Signal("stated", frozenset({canonical}), countries, precise=True)


def _address_signal(country: str | None, region: str | None, notes: list[str]) -> _Signal | None:
    cc = _normalise_country(country)
    if cc is None:
        if region:
            notes.append(f"address: region {region!r} given without a country; ignored")
        return None
    if cc in _REGION_TABLES and region and region.strip():
        zones = region_zones(cc, region)
        if zones is not None:
            return _Signal("address", zones, frozenset({cc}), precise=True)
        notes.append(f"address: region {region!r} not recognised for {cc}; using all {cc} zones")
    all_zones = _country_table().get(cc)
    if not all_zones:
        notes.append(f"address: country {cc!r} has no zones in tzdata; ignored")
        return None
    return _Signal("address", all_zones, frozenset({cc}), precise=len(all_zones) == 1)


def _phone_signal(phone_e164: str | None, notes: list[str]) -> _Signal | None:
    if phone_e164 is None or not phone_e164.strip():
        return None
    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        notes.append(f"phone: {phone_e164!r} is not a parsable E.164 number; ignored")
        return None
    if not phonenumbers.is_valid_number(number):
        notes.append(f"phone: {phone_e164!r} is not a valid number; ignored")
        return None
    found = frozenset(z for z in phone_tz.time_zones_for_number(number) if is_valid_zone(z))
    if not found:
        notes.append(f"phone: no time zone known for {phone_e164!r}")
        return None
    cc = number.country_code or 0
    regions = frozenset(phonenumbers.region_codes_for_country_code(cc))
    geographic = phonenumbers.is_number_type_geographical(phonenumbers.number_type(number), cc)
    country_level = frozenset(phone_tz._country_level_time_zones_for_number(number))
    if not geographic or (len(found) > 1 and found == country_level):
        return _Signal("phone", found, regions, precise=False)
    region = phonenumbers.region_code_for_number(number)
    countries = frozenset({region}) if region else regions
    return _Signal("phone", found, countries, precise=True)


def _narrower_signal(coarse: _Signal, signals: list[_Signal]) -> _Signal | None:
    """A signal that places the borrower more precisely inside ``coarse``'s countries."""
    for other in signals:
        if other is coarse or not other.countries:
            continue
        if other.precise and other.countries & coarse.countries:
            return other
        if not other.precise and other.countries < coarse.countries:
            return other
    return None


def plausible_zones(
    *,
    stated: str | None,
    country: str | None,
    region: str | None,
    phone_e164: str | None,
    default_zone: str | None = None,
    strict_union: bool = False,
) -> ZoneSet:
    """Every zone the borrower may plausibly be in (see the module docstring for the rule).

    Signals that disagree are combined by union; coarse country-wide signals are added
    unless a precise signal already places the borrower in that country (or always, with
    ``strict_union``); with no usable signal, ``default_zone`` is used.
    """
    notes: list[str] = []
    signals = [
        s
        for s in (
            _stated_signal(stated, notes),
            _address_signal(country, region, notes),
            _phone_signal(phone_e164, notes),
        )
        if s is not None
    ]
    zones: set[str] = set()
    sources: dict[str, list[str]] = {}
    for s in signals:
        narrower = None if strict_union or s.precise else _narrower_signal(s, signals)
        if narrower is not None:
            notes.append(
                f"{s.name}: country-wide ({', '.join(sorted(s.countries))}); not used because"
                f" {narrower.name} places the borrower more precisely in that country"
            )
            sources[s.name] = []
            continue
        zones |= s.zones
        sources[s.name] = sorted(s.zones)

    if not zones and default_zone is not None:
        if not is_valid_zone(default_zone):
            raise ValueError(f"default_zone is not an IANA time zone: {default_zone!r}")
        zones.add(default_zone)
        sources["default"] = [default_zone]
    return ZoneSet(frozenset(zones), sources, tuple(notes))
