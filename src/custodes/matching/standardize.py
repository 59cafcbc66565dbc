"""Standardization of names, addresses, dates and TINs, as DuckDB SQL over whole tables.

Everything here is a SQL expression builder: a million rows are standardized in one query, never
row by row through Python. The one exception is `parse_one_line`, which uses usaddress for the
rare item whose whole address sits in the street field.

The rules follow USPS Publication 28 (street suffixes, directionals, secondary unit designators)
and the IRS name control (first four letters of the last name).
"""

from __future__ import annotations

from collections.abc import Mapping

from custodes.store.sql import literal

# USPS Publication 28, Appendix C1: the common street suffixes and their standard abbreviation.
STREET_SUFFIXES: Mapping[str, str] = {
    "ALLEY": "ALY",
    "AVENUE": "AVE",
    "AV": "AVE",
    "AVEN": "AVE",
    "BOULEVARD": "BLVD",
    "BOUL": "BLVD",
    "CIRCLE": "CIR",
    "CIRC": "CIR",
    "COURT": "CT",
    "COVE": "CV",
    "CROSSING": "XING",
    "DRIVE": "DR",
    "DRV": "DR",
    "EXPRESSWAY": "EXPY",
    "FREEWAY": "FWY",
    "HIGHWAY": "HWY",
    "HIWAY": "HWY",
    "LANE": "LN",
    "LOOP": "LOOP",
    "PARKWAY": "PKWY",
    "PKY": "PKWY",
    "PLACE": "PL",
    "PLAZA": "PLZ",
    "POINT": "PT",
    "ROAD": "RD",
    "ROUTE": "RTE",
    "SQUARE": "SQ",
    "STREET": "ST",
    "STR": "ST",
    "TERRACE": "TER",
    "TRAIL": "TRL",
    "TURNPIKE": "TPKE",
    "WAY": "WAY",
    "HEIGHTS": "HTS",
    "GARDENS": "GDNS",
    "RIDGE": "RDG",
}
DIRECTIONALS: Mapping[str, str] = {
    "NORTH": "N",
    "SOUTH": "S",
    "EAST": "E",
    "WEST": "W",
    "NORTHEAST": "NE",
    "NORTHWEST": "NW",
    "SOUTHEAST": "SE",
    "SOUTHWEST": "SW",
}
# Secondary unit designators (Pub 28 Appendix C2); only the unit's identifier is compared.
UNIT_WORDS = (
    "APARTMENT",
    "APT",
    "UNIT",
    "SUITE",
    "STE",
    "ROOM",
    "RM",
    "FLOOR",
    "FL",
    "NO",
    "NUMBER",
    "BLDG",
    "BUILDING",
    "LOT",
    "SPACE",
    "SPC",
    "TRAILER",
    "TRLR",
    "#",
)
GENERATIONAL = ("JR", "SR", "II", "III", "IV", "V")


def _map_literal(m: Mapping[str, str]) -> str:
    return "MAP {" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in m.items()) + "}"


def clean_text(col: str) -> str:
    """Upper case, accents removed, punctuation to spaces, runs of spaces folded; '' -> NULL."""
    return (
        f"nullif(trim(regexp_replace(regexp_replace(upper(strip_accents(coalesce({col}, ''))),"
        f" '[^A-Z0-9# ]', ' ', 'g'), ' +', ' ', 'g')), '')"
    )


def name_sql(col: str) -> str:
    """A first or middle name: letters only, single spaces."""
    return (
        f"nullif(trim(regexp_replace(regexp_replace(upper(strip_accents(coalesce({col}, ''))),"
        f" '[^A-Z ]', ' ', 'g'), ' +', ' ', 'g')), '')"
    )


def last_name_sql(col: str) -> str:
    """A surname with a trailing generational suffix removed and spaces/hyphens dropped (so
    particles join: "DE LA CRUZ", "DELACRUZ" and "DE-LA CRUZ" agree)."""
    gens = "|".join(GENERATIONAL)
    base = name_sql(col)
    return f"nullif(replace(regexp_replace({base}, ' ({gens})$', ''), ' ', ''), '')"


def suffix_sql(suffix_col: str, last_col: str) -> str:
    """The generational suffix: the suffix field, or one written at the end of the surname."""
    gens = "|".join(GENERATIONAL)
    return (
        f"coalesce(nullif(replace(upper(trim(coalesce({suffix_col}, ''))), '.', ''), ''), "
        f"nullif(regexp_extract({name_sql(last_col)}, ' ({gens})$', 1), ''))"
    )


def name_control_sql(last_col: str) -> str:
    """IRS name control: the first four letters of the last name."""
    return f"left({last_name_sql(last_col)}, 4)"


def tin_sql(col: str) -> str:
    """Nine digits, or NULL when the value is not a 9-digit TIN with or without dashes."""
    return (
        f"CASE WHEN regexp_full_match(regexp_replace(coalesce({col}, ''), '[ -]', '', 'g'), "
        f"'[0-9]{{9}}') THEN regexp_replace({col}, '[ -]', '', 'g') END"
    )


def dob_sql(col: str) -> str:
    return f"try_strptime(trim({col}), '%Y-%m-%d')::DATE"


def zip5_sql(col: str) -> str:
    return f"CASE WHEN regexp_matches(coalesce({col}, ''), '^[0-9]{{5}}') THEN left({col}, 5) END"


def _street_tokens(col: str) -> str:
    """The street line as standardized tokens (suffixes and directionals abbreviated)."""
    s = clean_text(col)
    s = (
        f"regexp_replace(regexp_replace({s}, '^(P O|POST OFFICE|P O BOX|POB) ', 'PO ', 'g'), "
        f"'^PO BOX ', 'PO BOX ', 'g')"
    )
    table = _map_literal({**STREET_SUFFIXES, **DIRECTIONALS})
    return f"list_transform(string_split({s}, ' '), lambda t: coalesce({table}[t], t))"


def street_parts_sql(street: str, unit: str) -> dict[str, str]:
    """SQL for house number, street name (no suffix), suffix, unit id and PO box number."""
    tokens = _street_tokens(street)
    line = f"array_to_string({tokens}, ' ')"
    unit_re = "(" + "|".join(w for w in UNIT_WORDS if w != "#") + "|#) ?#? ?([A-Z0-9-]+)$"
    body = f"trim(regexp_replace({line}, ' {unit_re}', ''))"
    suffixes = "|".join(sorted(set(STREET_SUFFIXES.values())))
    unit_from_field = (
        f"nullif(regexp_replace({clean_text(unit)}, '^("
        + "|".join(w for w in UNIT_WORDS if w != "#")
        + r"|#)? ?#? ?', ''), '')"
    )
    return {
        "po_box": f"nullif(regexp_extract({line}, '^PO BOX ([0-9A-Z]+)', 1), '')",
        "house": f"nullif(regexp_extract({body}, '^([0-9]+[A-Z]?(-[0-9A-Z]+)?)( |$)', 1), '')",
        "street_name": (
            f"nullif(trim(regexp_replace(regexp_replace({body}, "
            f"'^[0-9]+[A-Z]?(-[0-9A-Z]+)? ', ''), ' ({suffixes})$', '')), '')"
        ),
        "street_suffix": f"nullif(regexp_extract({body}, ' ({suffixes})$', 1), '')",
        "unit_id": (
            f"coalesce({unit_from_field}, nullif(regexp_extract({line}, ' {unit_re}', 2), ''))"
        ),
    }


def name_columns(prefix: str = "") -> dict[str, str]:
    p = prefix
    return {
        "std_first": name_sql(f"{p}first_name"),
        "std_middle": name_sql(f"{p}middle_name"),
        "std_last": last_name_sql(f"{p}last_name"),
        "std_suffix": suffix_sql(f"{p}suffix", f"{p}last_name"),
        "name_control": name_control_sql(f"{p}last_name"),
        "std_tin": tin_sql(f"{p}tin"),
        "std_dob": dob_sql(f"CAST({p}dob AS VARCHAR)"),
    }


def address_columns(prefix: str = "") -> dict[str, str]:
    p = prefix
    parts = street_parts_sql(f"{p}street", f"{p}unit")
    return {
        "std_city": clean_text(f"{p}city"),
        "std_state": f"upper(trim({p}state))",
        "std_zip5": zip5_sql(f"{p}zip"),
        **{f"std_{k}": v for k, v in parts.items()},
    }


def standardized_select(prefix: str = "", *, names: bool = True, address: bool = True) -> str:
    """The select list that standardizes a table with the interchange/master column names."""
    cols = {
        **(name_columns(prefix) if names else {}),
        **(address_columns(prefix) if address else {}),
    }
    return ", ".join(f"{sql} AS {name}" for name, sql in cols.items())


# Whether a supplied address is an address on record: same ZIP5 (or same city and state), same
# house number or PO box, the same unit when both give one, and a street name equal or one edit
# apart (a typo or transposition) for names longer than three letters. The suffix may differ or
# be missing: "OAK ST" = "OAK".
ADDRESS_MATCH_SQL = """(
  (a.std_zip5 = b.std_zip5 OR ((a.std_zip5 IS NULL OR b.std_zip5 IS NULL)
                               AND a.std_city = b.std_city AND a.std_state = b.std_state))
  AND ((a.std_po_box IS NOT NULL AND a.std_po_box = b.std_po_box)
       OR (a.std_po_box IS NULL AND b.std_po_box IS NULL AND a.std_house = b.std_house
           AND (a.std_street_name = b.std_street_name
                OR (length(a.std_street_name) > 3
                    AND damerau_levenshtein(a.std_street_name, b.std_street_name) <= 1))))
  AND (a.std_unit_id IS NULL OR b.std_unit_id IS NULL OR a.std_unit_id = b.std_unit_id)
)"""


def parse_one_line(text: str) -> dict[str, str | None]:
    """Split a one-line US address into street, unit, city, state, zip with usaddress.

    Used only for items whose city and ZIP are empty but whose street field holds a whole
    address; usaddress parses about 11k strings a second, too slow for whole tables.
    """
    import usaddress

    try:
        tagged, _ = usaddress.tag(text)
    except usaddress.RepeatedLabelError:
        return {"street": text, "unit": None, "city": None, "state": None, "zip": None}
    street_keys = (
        "AddressNumber",
        "StreetNamePreDirectional",
        "StreetName",
        "StreetNamePostType",
        "StreetNamePostDirectional",
        "USPSBoxType",
        "USPSBoxID",
    )
    street = " ".join(tagged[k] for k in street_keys if k in tagged) or None
    unit = (
        " ".join(tagged[k] for k in ("OccupancyType", "OccupancyIdentifier") if k in tagged) or None
    )
    return {
        "street": street,
        "unit": unit,
        "city": tagged.get("PlaceName"),
        "state": tagged.get("StateName"),
        "zip": tagged.get("ZipCode"),
    }
