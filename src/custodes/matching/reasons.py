"""What each match reason and flag means, in words an officer reads (`explain`, review groups).

The codes are written by `link.decide` into `linked.parquet` (`reasons`: why an item was not
identified; `flags`: what the evidence showed). Every code the gate can write has a sentence
here (tested), so no item is ever in review for a reason nobody can read.
"""

from __future__ import annotations

REASONS = {
    "no_candidate": "no record in the master file resembles the item",
    "low_probability": "the match probability is below the identification threshold",
    "near_tie": "another record scores almost as well (the margin is below the threshold)",
    "first_name_differs": "the first name is a different name, not a misspelling",
    "first_name_uncorroborated": (
        "the first name is close but not the same (typo, nickname, sound-alike) and neither "
        "a TIN nor a middle name confirms it"
    ),
    "first_name_missing": "the list gives no first name",
    "dob_differs": "the date of birth differs by more than a typo",
    "dob_missing": "the list gives no (valid) date of birth",
    "tin_missing": (
        "the list gives no TIN (or an ITIN no filer holds), so nothing but name, date of "
        "birth and address can tell household members and namesakes apart"
    ),
    "another_person": (
        "two of first name, date of birth and TIN contradict the record: it is another "
        "person (a relative at the same address); never for review"
    ),
    "insufficient_identifiers": (
        "the list gives fewer than two of first name, date of birth and TIN: nothing in the "
        "master file tells this person from a relative at the same house, so no review could "
        "resolve it; it takes a date of birth or a TIN on the list (the agency's answer says "
        "only that no information was disclosed, as for anyone not identified)"
    ),
    "suffix_conflict": "the suffixes differ (Jr/Sr, II): the other generation",
    "tin_conflict": "the TIN on the list is not this record's and the rest does not outweigh it",
    "tin_name_conflict": "the TIN is this record's but the name or date of birth say another "
    "person (a TIN used by someone else)",
    "namesake_risk": (
        "no TIN and no address on record support the match, and name plus date of birth are "
        "not rare enough to rule out a namesake in a file this size"
    ),
}

FLAGS = {
    "household": "someone else with this surname lives at the record's last address",
    "generational": "someone with the same first name lives there (a Jr/Sr, II)",
    "twin": "someone born the same day lives there",
    "tin_typo": "the TIN differs from the record's by one digit or two transposed",
    "tin_differs": "the TIN on the list is not the record's (an old ITIN, another number); "
    "outweighed by name, date of birth and the house",
    "first_name_replaced": "the first name differs; outweighed by the exact TIN and date of "
    "birth and the surname or house",
    "dob_replaced": "the date of birth differs; outweighed by the exact TIN, the name and the "
    "house, less than a generation apart",
    "itin_for_ssn": "the list gives an ITIN that no filer holds for a record with an SSN "
    "(the number used before the SSN was issued): it neither confirms nor contradicts",
    "names_swapped": "first and last name are written the other way round",
    "dob_missing": "the list gives no date of birth",
    **{k: REASONS[k] for k in ("suffix_conflict", "tin_conflict", "tin_name_conflict")},
    "namesake_risk": REASONS["namesake_risk"],
}


def meaning(code: str) -> str:
    """The sentence for a reason or flag code; a rule check id (the caseload rule...) is
    explained by its own citation elsewhere and comes back as itself."""
    return REASONS.get(code) or FLAGS.get(code) or code
