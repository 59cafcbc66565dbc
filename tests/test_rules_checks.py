"""The rule engine and the reference §6103 rule set: every check passes a clean request and
fails its own defect; item-level overrides, the checks after matching, recipients'
safeguards and agreements, court orders, overlays that only make verdicts stricter."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custodes.errors import InputError
from custodes.requests.format import ITEM_COLUMNS, read_envelope
from custodes.rules.evaluate import evaluate
from custodes.rules.provisions import REFERENCE, lint, load
from custodes.rules.types import Agreement, Registry
from custodes.synthetic.requests import PLACEHOLDER_ADDRESSES
from shared_rules import AGENCY, RS, TODAY, _ice, envelope, item, load_items


def write_request(folder: Path, env: dict[str, Any], items: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "envelope.json").write_text(json.dumps(env))
    cols = list(dict.fromkeys([*ITEM_COLUMNS, *(k for it in items for k in it)]))
    with open(folder / "items.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(items)
    return folder


def registry(
    *,
    agreement: Agreement | None = None,
    safeguards: bool = True,
    findings: int = 0,
    role: str = "head_of_agency",
    valid_to: dt.date | None = None,
) -> Registry:
    return Registry(
        {AGENCY: {"name": AGENCY, "safeguards_current": safeguards, "open_findings": findings}},
        [
            {
                "agency": AGENCY,
                "name": "Synthetic Director",
                "title": "Director",
                "role": role,
                "valid_from": dt.date(2025, 1, 1),
                "valid_to": valid_to,
            }
        ],
        {agreement.id: agreement} if agreement else {},
    )


def run(
    tmp: Path,
    env: dict[str, Any],
    items: list[dict[str, str]],
    reg: Registry | None = None,
    match: dict[str, list[bool]] | None = None,
):  # type: ignore[no-untyped-def]
    folder = write_request(tmp / "req", env, items)
    table = load_items(folder)
    if match is not None:
        for k, v in match.items():
            table = table.append_column(k, pa.array(v, pa.bool_()))
    return evaluate(RS, reg or registry(), read_envelope(folder), table, today=TODAY, con=_con())


@functools.cache
def _con() -> duckdb.DuckDBPyConnection:
    """One DuckDB connection for the hundreds of evaluations here (a new database costs tens of
    milliseconds; each evaluation registers its own items and replaces its own table).
    `evaluate` making and closing its own is tested wherever a request is processed."""
    return duckdb.connect()


def verdict(ev, check: str):  # type: ignore[no-untyped-def]
    return next(v for v in [*ev.request, *ev.item] if v.check == check)


def test_reference_rule_set_lints_clean_and_disclaims() -> None:
    rs, problems = lint(REFERENCE)
    assert not problems and rs is not None
    assert set(rs.provisions) >= {
        "irc-6103-i-1",
        "irc-6103-i-2",
        "irc-6103-l-6",
        "irc-6103-l-7",
        "irc-6103-m-2",
        "irc-6103-d",
    }
    assert all("not legal advice" in p.note for p in rs.provisions.values())
    assert len(rs.sha256) == 64


def test_clean_request_passes(tmp_path: Path) -> None:
    ev = run(tmp_path, envelope(), [item(1), item(2, official_id="OFF-2")])
    assert not ev.refused
    assert all(v.passed for v in ev.request)
    assert all(v.passed in (True, None) for v in ev.item)
    assert ev.ruleset_sha256 == RS.sha256


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.text("ABCDEFGHIJ ", min_size=1, max_size=12),
    tin=st.from_regex(r"[0-9]{9}", fullmatch=True),
    case=st.text("ABC123-", min_size=1, max_size=10),
    junk=st.sampled_from(["", " ", "NA", "00000", "TX"]),
)
def test_august_2025_pattern_never_passes(
    tmp_path_factory, first: str, tin: str, case: str, junk: str
) -> None:
    """Name and TIN, no address: whatever else the item carries, it cannot pass."""
    tmp = tmp_path_factory.mktemp("aug")
    it = item(
        1,
        first_name=first,
        tin=tin,
        case_number=case,
        street="",
        unit="",
        city="",
        state=junk if junk == "TX" else "",
        zip=junk if junk != "TX" else "",
    )
    ev = run(tmp, envelope(), [it], match={"identified": [True], "address_on_record": [True]})
    sub = verdict(ev, "address-substantive")
    assert sub.passed is False and sub.examples == ["I0001"]
    assert "6103(i)(2)(B)(i)" in sub.citation


@pytest.mark.parametrize(
    "ph",
    (
        *PLACEHOLDER_ADDRESSES,
        ("UNKNOWN ADDRESS", "UNKNOWN", "TX", "78701"),
        ("12 OAK ST", "AUSTIN", "TX", "00000"),
        ("", "", "", "78701"),
        ("OAK ST", "AUSTIN", "TX", "78701"),
        ("12 OAK ST", "", "TX", "78701"),
        ("12 OAK ST", "AUSTIN", "ZZ", "78701"),
        ("12 OAK ST", "AUSTIN", "TX", "7870"),
        ("DON'T CARE", "", "", "12345"),
        ("FAILED TO PROVIDE", "AUSTIN", "TX", "78701"),
    ),
)
def test_placeholder_corpus_fails(tmp_path: Path, ph: tuple) -> None:  # type: ignore[type-arg]
    street, city, state, zip_ = (x or "" for x in ph)
    ev = run(tmp_path, envelope(), [item(1, street=street, city=city, state=state, zip=zip_)])
    assert verdict(ev, "address-substantive").passed is False


@pytest.mark.parametrize(
    "street",
    [
        "12 OAK ST",
        "1600-B ELM AVE",
        "7A N MAIN ST",
        "PO BOX 44",
        "P.O. BOX 9",
        "12 1/2 PINE RD",
        "4021 W 3RD ST",
        "PoSt OfFiCe BoX 12",
    ],
)
def test_real_addresses_pass(tmp_path: Path, street: str) -> None:
    ev = run(tmp_path, envelope(), [item(1, street=street.upper(), zip="78701-1234")])
    assert verdict(ev, "address-substantive").passed is True


def test_one_official_on_too_many_investigations_is_flagged(tmp_path: Path) -> None:
    cap = RS.parameters["official_case_cap"]
    items = [item(i) for i in range(cap + 1)] + [item(10_000, official_id="OFF-2")]
    ev = run(tmp_path, envelope(), items)
    v = verdict(ev, "official-caseload")
    assert v.passed is False and v.severity == "review" and v.failing == cap + 1
    assert "personally and directly engaged" in v.citation
    assert "I9999" not in v.examples


def test_signer_not_on_the_statutory_list_refuses(tmp_path: Path) -> None:
    env = envelope(
        signer={
            "name": "Synthetic Director",
            "title": "Field Office Director",
            "role": "field_office_director",
        }
    )
    ev = run(tmp_path, env, [item(1)], registry(role="field_office_director"))
    v = verdict(ev, "signer-authorized")
    assert ev.refused and v.passed is False and "6103(i)(2)(A)" in v.citation


def test_signer_who_left_office_refuses(tmp_path: Path) -> None:
    ev = run(tmp_path, envelope(), [item(1)], registry(valid_to=dt.date(2026, 1, 31)))
    assert ev.refused and verdict(ev, "signer-authorized").passed is False


# One mutation per check that makes it fail. (check, envelope changes, item changes)
FAILURES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("statute-designated", {"statutory_authority": "immigration law"}, {}),
    ("statute-not-tax", {"statutory_authority": "26 U.S.C. 7201"}, {}),
    ("reason-specific", {"reason": "law enforcement purposes"}, {}),
    ("periods-stated", {"taxable_periods": []}, {}),
    ("periods-stated", {"taxable_periods": [2031]}, {}),
    ("officials-named", {"officials": []}, {}),
    ("fields-permitted", {"fields_requested": ["unearned_income"]}, {}),
    ("name-present", {}, {"last_name": ""}),
    ("address-present", {}, {"street": "", "city": "", "zip": ""}),
    ("address-substantive", {}, {"street": "NA NA"}),
    ("periods-per-item", {"taxable_periods": []}, {}),
    ("case-number", {}, {"case_number": " "}),
    ("item-reason", {"reason": ""}, {}),
    ("official-engaged", {}, {"official_id": "OFF-99"}),
]


@pytest.mark.parametrize(
    ("check", "env_change", "item_change"), FAILURES, ids=[f[0] for f in FAILURES]
)
def test_each_check_fails(
    tmp_path: Path, check: str, env_change: dict[str, Any], item_change: dict[str, str]
) -> None:
    ev = run(tmp_path, envelope(**env_change), [item(1, **item_change)])
    assert verdict(ev, check).passed is False
    base = run(tmp_path / "base", envelope(), [item(1)])
    assert verdict(base, check).passed is True


def test_item_level_reason_and_periods_override(tmp_path: Path) -> None:
    ev = run(
        tmp_path,
        envelope(reason="", taxable_periods=[]),
        [item(1, reason="Subject of case C-1 for failure to depart.", taxable_periods="2024")],
    )
    assert verdict(ev, "item-reason").passed and verdict(ev, "periods-per-item").passed


@pytest.mark.parametrize(
    ("periods", "ok"),
    [
        ("2023;2024", True),
        ("2023 ; 2024", True),
        ("20x3;abc", False),
        ("2023;", False),
        ("abc", False),
    ],
)
def test_item_periods_must_be_years(tmp_path: Path, periods: str, ok: bool) -> None:
    """'20x3;abc' used to pass the periods check."""
    ev = run(tmp_path, envelope(), [item(1, taxable_periods=periods)])
    assert verdict(ev, "periods-per-item").passed is ok


def test_after_matching_checks(tmp_path: Path) -> None:
    ev = run(tmp_path, envelope(), [item(1)])
    assert verdict(ev, "address-on-record").passed is None
    ev = run(
        tmp_path,
        envelope(),
        [item(1), item(2)],
        match={"identified": [True, True], "address_on_record": [True, False]},
    )
    v = verdict(ev, "address-on-record")
    assert v.passed is False and v.examples == ["I0002"]
    ev = run(
        tmp_path, envelope(), [item(1)], match={"identified": [False], "address_on_record": [True]}
    )
    assert verdict(ev, "identified").passed is False


def test_recipient_safeguards_and_agreements(tmp_path: Path) -> None:
    ev = run(tmp_path, envelope(), [item(1)], registry(safeguards=False))
    assert ev.refused and verdict(ev, "recipient-safeguards").passed is False
    ev = run(tmp_path, envelope(), [item(1)], registry(findings=2))
    assert ev.refused and "2 open" in (verdict(ev, "recipient-safeguards").detail or "")
    ev = run(tmp_path, envelope(agreement="irs-ice-2025"), [item(1)])
    assert ev.refused and verdict(ev, "agreement-registered").passed is False
    agr = _ice()
    ev = run(
        tmp_path,
        envelope(agreement="irs-ice-2025"),
        [item(1), item(2, removal_order_date="")],
        registry(agreement=agr),
    )
    assert not ev.refused
    v = verdict(ev, "removal-order-date")
    assert v.passed is False and v.examples == ["I0002"] and v.source == "irs-ice-2025"
    small = Agreement(**{**agr.__dict__, "parameters": {"max_items": 1}})
    ev = run(
        tmp_path, envelope(agreement="irs-ice-2025"), [item(1), item(2)], registry(agreement=small)
    )
    assert ev.refused and verdict(ev, "volume-within-agreement").passed is False


def test_court_order_for_i_1(tmp_path: Path) -> None:
    order = {
        "court": "D. Mass.",
        "judge": "J",
        "docket": "1:26-mc-1",
        "date": "2026-01-01",
        "expires": "2026-12-31",
        "findings": ["a", "b", "c"],
    }
    base = dict(
        provision="irc-6103-i-1",
        fields_requested=["return_information"],
        signer={"name": "Synthetic Director", "title": "USA", "role": "us_attorney"},
        statutory_authority="18 U.S.C. 1343",
    )
    reg = registry(role="us_attorney")
    assert verdict(
        run(tmp_path, envelope(**base, court_order=order), [item(1)], reg), "court-order"
    ).passed
    for change in ({"expires": "2026-06-30"}, {"findings": ["a"]}, {"judge": ""}):
        ev = run(tmp_path, envelope(**base, court_order=order | change), [item(1)], reg)
        assert ev.refused and verdict(ev, "court-order").passed is False
    ev = run(tmp_path, envelope(**base), [item(1)], reg)
    assert verdict(ev, "court-order").detail == "no court order attached"


def test_unknown_provision_is_refused(tmp_path: Path) -> None:
    ev = run(tmp_path, envelope(provision="irc-6103-z-9"), [item(1)])
    assert ev.refused and [v.check for v in ev.request] == ["basis-known"]


ITEM_CHECKS = [
    c for c, v in RS.checks.items() if v.level == "item" and v.phase == "before_matching"
]
REQUEST_CHECKS = [c for c, v in RS.checks.items() if v.level == "request"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    add_items=st.lists(st.sampled_from(ITEM_CHECKS), max_size=4),
    add_reqs=st.lists(st.sampled_from(REQUEST_CHECKS), max_size=3),
    roles=st.one_of(
        st.none(),
        st.lists(st.sampled_from(["head_of_agency", "us_attorney", "fbi_director"]), max_size=3),
    ),
    cap=st.integers(1, 1000),
    max_items=st.integers(1, 10),
    mutation=st.sampled_from([*FAILURES, ("none", {}, {})]),
)
def test_overlay_only_makes_verdicts_stricter(
    tmp_path_factory, add_items, add_reqs, roles, cap, max_items, mutation
) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("ov")
    agr = Agreement(
        id="agr",
        provision="irc-6103-i-2",
        agency=AGENCY,
        citation="Agreement X",
        signer_roles=roles,
        add_request_requirements=add_reqs,
        add_item_requirements=add_items,
        parameters={"official_case_cap": cap, "max_items": max_items},
    )
    _, env_change, item_change = mutation
    items = [item(i, **item_change) for i in range(3)]
    plain = run(tmp / "a", envelope(**env_change), items, registry(agreement=agr))
    strict = run(tmp / "b", envelope(**env_change, agreement="agr"), items, registry(agreement=agr))
    assert strict.refused or not plain.refused
    before = {v.check: v for v in [*plain.request, *plain.item]}
    after = {v.check: v for v in [*strict.request, *strict.item]}
    for cid, v in before.items():
        if v.passed is False:
            assert after[cid].passed is False, cid
            assert after[cid].failing >= v.failing
    assert set(before) <= set(after)


def test_agreement_cannot_remove_requirements() -> None:
    with pytest.raises(InputError, match="only add requirements"):
        Agreement.from_dict(
            {
                "id": "x",
                "provision": "irc-6103-i-2",
                "agency": AGENCY,
                "citation": "c",
                "remove_item_requirements": ["address-present"],
            }
        )


def test_court_decisions_are_cited_by_name() -> None:
    """A court decision a check rests on is cited by its case name, not by a date alone (#24)."""

    rs = load()
    cited = [c.citation for c in rs.checks.values() if re.search(r"D\.D\.C\.|Cir\.", c.citation)]
    assert cited and all(" v. " in c for c in cited), cited
