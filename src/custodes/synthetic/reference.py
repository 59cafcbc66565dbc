"""Reference tables for synthetic data: US name frequencies, ZIP codes, street names.

Names: the 1990 Census frequency files shipped by the `names` package (public domain), so
that common surnames are as common as they are in the US. ZIP codes: the USPS table shipped by
the `zipcodes` package. Street names: the most common US street names (hand-listed: no package
ships them).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import names as _names_pkg
import numpy as np
import zipcodes

STREETS = [
    "MAIN",
    "OAK",
    "PINE",
    "MAPLE",
    "CEDAR",
    "ELM",
    "WASHINGTON",
    "LAKE",
    "HILL",
    "PARK",
    "WALNUT",
    "SPRING",
    "NORTH",
    "RIDGE",
    "CHURCH",
    "WILLOW",
    "MILL",
    "SUNSET",
    "RAILROAD",
    "JACKSON",
    "CHERRY",
    "HIGHLAND",
    "FRANKLIN",
    "JEFFERSON",
    "LINCOLN",
    "MADISON",
    "CENTER",
    "MEADOW",
    "FOREST",
    "DOGWOOD",
    "LAUREL",
    "HICKORY",
    "CHESTNUT",
    "BIRCH",
    "ADAMS",
    "MONROE",
    "RIVER",
    "VALLEY",
    "SCHOOL",
    "COLLEGE",
    "UNION",
    "BROADWAY",
    "HOLLY",
    "SYCAMORE",
    "MAGNOLIA",
    "ASH",
    "POPLAR",
    "SPRUCE",
    "CYPRESS",
    "JUNIPER",
    "ASPEN",
    "LOCUST",
    "HAWTHORNE",
    "VIEW",
    "GROVE",
    "ORCHARD",
    "PROSPECT",
    "PLEASANT",
    "FAIRVIEW",
    "LIBERTY",
    "MARKET",
    "WATER",
    "BRIDGE",
    "FRONT",
    "HIGH",
    "COURT",
    "GREEN",
    "ELIZABETH",
    "WILSON",
    "KING",
    "HARRISON",
    "PERSHING",
    "ROOSEVELT",
    "KENNEDY",
    "MARTIN",
    "LUTHER",
    "KING",
    "CLEVELAND",
    "GRANT",
    "SHERMAN",
    "HAMILTON",
    "CARTER",
    "DAVIS",
    "EVERGREEN",
    "HERITAGE",
    "COUNTRY",
    "CLUB",
    "HARBOR",
    "BAY",
    "SHORE",
    "BEACH",
    "MOUNTAIN",
    "SUMMIT",
    "CANYON",
    "MESA",
    "SANTA",
    "FE",
    "ALAMEDA",
    "CAMINO",
    "REAL",
    "VISTA",
    "DEL",
    "MAR",
    "PALM",
    "OLIVE",
    "ROSE",
    "LILAC",
    "IVY",
    "VINE",
]
NUMBERED = ["1ST", "2ND", "3RD"] + [f"{i}TH" for i in range(4, 21)]
# USPS Publication 28 standard suffix abbreviations and their spelled-out forms.
SUFFIXES = (
    ("ST", "STREET"),
    ("AVE", "AVENUE"),
    ("RD", "ROAD"),
    ("DR", "DRIVE"),
    ("LN", "LANE"),
    ("BLVD", "BOULEVARD"),
    ("CT", "COURT"),
    ("WAY", "WAY"),
    ("PL", "PLACE"),
    ("TER", "TERRACE"),
    ("CIR", "CIRCLE"),
    ("PKWY", "PARKWAY"),
)
SUFFIX_WEIGHTS = (0.30, 0.22, 0.14, 0.11, 0.07, 0.03, 0.04, 0.03, 0.02, 0.01, 0.02, 0.01)
DIRECTIONS = ("N", "S", "E", "W")


def _read_census(filename: str) -> tuple[list[str], np.ndarray]:
    path = os.path.join(os.path.dirname(_names_pkg.__file__), filename)
    names, freq = [], []
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2:
                names.append(parts[0])
                freq.append(float(parts[1]))
    p = np.asarray(freq, dtype=np.float64)
    p = np.where(p > 0, p, 0.0001)
    return names, p / p.sum()


@functools.cache
def surnames() -> tuple[list[str], np.ndarray]:
    return _read_census("dist.all.last")


@functools.cache
def first_names(sex: str) -> tuple[list[str], np.ndarray]:
    return _read_census("dist.male.first" if sex == "M" else "dist.female.first")


# The zipcodes package's table of every ZIP code (the package is untyped).
_list_all: Callable[[], list[dict[str, Any]]] = zipcodes.list_all


@functools.cache
def zip_table() -> tuple[list[str], list[str], list[str]]:
    """(zip, city, state) of active standard ZIP codes in USPS states, sorted by ZIP."""
    from custodes.records.schema import US_STATES

    rows = sorted(
        (z["zip_code"], z["city"].upper(), z["state"])
        for z in _list_all()
        if z.get("active") and z.get("zip_code_type") == "STANDARD" and z["state"] in US_STATES
    )
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def street_names() -> list[str]:
    return STREETS + NUMBERED
