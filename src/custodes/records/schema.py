"""The master file's columns and the value rules every imported row must meet."""

from __future__ import annotations

PEOPLE_COLUMNS = ("tin", "tin_type", "first_name", "middle_name", "last_name", "suffix", "dob")
PEOPLE_OPTIONAL = ("record_id",)
ADDRESS_COLUMNS = ("tin", "tax_year", "street", "unit", "city", "state", "zip")

# The columns that describe a person in a request's items, as the requests read them and the
# matching compares them with the master file: the item's id, name, date of birth, TIN and
# address (here, below both rooms).
ADDRESS_PARTS = ("street", "unit", "city", "state", "zip")
ITEM_PERSON_COLUMNS = (
    "item_id",
    "first_name",
    "middle_name",
    "last_name",
    "suffix",
    "dob",
    "tin",
    *ADDRESS_PARTS,
)

TIN_TYPES = ("SSN", "ITIN")
SUFFIXES = ("JR", "SR", "II", "III", "IV", "V")

# USPS two-letter codes: the states, DC, the territories and the military "states".
US_STATES = [
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "DC",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
    "PR",
    "GU",
    "VI",
    "AS",
    "MP",
    "AA",
    "AE",
    "AP",
]

# Longest accepted text in any field: a "huge field" is refused, not truncated.
MAX_FIELD = {
    "first_name": 60,
    "middle_name": 60,
    "last_name": 80,
    "street": 120,
    "unit": 30,
    "city": 60,
    "record_id": 64,
}

# ITIN middle digits (the "group"), per IRS: 50-65, 70-88, 90-92, 94-99.
ITIN_GROUP_SQL = (
    "(g BETWEEN 50 AND 65 OR g BETWEEN 70 AND 88 OR g BETWEEN 90 AND 92 OR g BETWEEN 94 AND 99)"
)

# Public schema of the stored tables (Parquet), in order.
PEOPLE_STORED = (
    "record_id",
    "tin",
    "tin_type",
    "first_name",
    "middle_name",
    "last_name",
    "suffix",
    "dob",
)
ADDRESS_STORED = ("record_id", "tin", "tax_year", "street", "unit", "city", "state", "zip")
