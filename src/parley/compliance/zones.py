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

# Region tables (zone names as in tzdata's zone.tab; regions spanning zones list each).
from parley.compliance.region_zones import (
    _COUNTRY_ALIASES,
    _REGION_TABLES,
    AU_STATE_ZONES,
    CA_PROVINCE_ZONES,
    US_STATE_ZONES,
)

__all__ = [
    "AU_STATE_ZONES",
    "CA_PROVINCE_ZONES",
    "US_STATE_ZONES",
    "PhoneSignal",
    "ZoneSet",
    "country_zones",
    "is_valid_zone",
    "phone_signal",
    "plausible_zones",
    "region_zones",
]


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


@dataclass(frozen=True, slots=True)
class PhoneSignal:
    """What a phone number says about where its holder is, computed once per number.

    Parsing and validating a number costs about a millisecond; the signal only depends
    on the number, so it is computed when the contact point is stored
    (:func:`phone_signal`), kept with it, and handed to :func:`plausible_zones`.
    """

    zones: frozenset[str]
    countries: frozenset[str]
    precise: bool
    note: str | None = None

    def as_record(self) -> dict[str, Any]:
        return {
            "zones": sorted(self.zones),
            "countries": sorted(self.countries),
            "precise": self.precise,
            "note": self.note,
        }

    @classmethod
    def from_record(cls, record: Any) -> PhoneSignal | None:
        """The stored form back; None for anything malformed (then recompute)."""
        try:
            zones = frozenset(str(z) for z in record["zones"])
            countries = frozenset(str(c) for c in record["countries"])
            note = record.get("note")
            return cls(zones, countries, bool(record["precise"]), str(note) if note else None)
        except (KeyError, TypeError, AttributeError):
            return None


def phone_signal(phone_e164: str) -> PhoneSignal:
    """The (possibly empty, with a note) signal of one number."""
    notes: list[str] = []
    found = _phone_signal(phone_e164, notes)
    if found is None:
        return PhoneSignal(frozenset(), frozenset(), False, notes[0] if notes else None)
    return PhoneSignal(found.zones, found.countries, found.precise)


def _from_phone_signal(signal: PhoneSignal, notes: list[str]) -> _Signal | None:
    if not signal.zones:
        if signal.note:
            notes.append(signal.note)
        return None
    return _Signal("phone", signal.zones, signal.countries, signal.precise)


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
    phone: PhoneSignal | None = None,
) -> ZoneSet:
    """Every zone the borrower may plausibly be in (see the module docstring for the rule).

    ``phone`` is the precomputed signal of ``phone_e164`` (see :class:`PhoneSignal`);
    when given, the number is not parsed again. Signals that disagree are combined by
    union; coarse country-wide signals are added
    unless a precise signal already places the borrower in that country (or always, with
    ``strict_union``); with no usable signal, ``default_zone`` is used.
    """
    notes: list[str] = []
    signals = [
        s
        for s in (
            _stated_signal(stated, notes),
            _address_signal(country, region, notes),
            _from_phone_signal(phone, notes)
            if phone is not None
            else _phone_signal(phone_e164, notes),
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
