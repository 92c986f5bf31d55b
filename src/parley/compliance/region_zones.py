"""Time zones of regions within countries that span several (US states, Canadian
provinces, Australian states), for `zones.plausible_zones`. Data only.

A region spanning two zones maps to both: the contact-hours rule must hold in each.
Zone names follow tzdata's zone.tab. Where a town officially or customarily keeps the
neighbouring zone, that zone is listed too (conservative: a larger set only narrows the
allowed window).
"""

from __future__ import annotations

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
