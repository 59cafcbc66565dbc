"""The rule engine and the reference §6103 rule set: every check passes and fails, the
August-2025 pattern is refused by construction, overlays only ever tighten."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from custodes.cli import app
from custodes.errors import AccessDenied, ConflictError, InputError, NotFound
from custodes.records.files import read_text_table
from custodes.requests.format import ITEM_COLUMNS, read_envelope, with_optional
from custodes.rules import registry as reg_room
from custodes.rules.evaluate import evaluate, item_sql
from custodes.rules.provisions import REFERENCE, lint, load, overlay
from custodes.rules.types import Agreement, Registry
from custodes.services import users as users_svc
from custodes.services.rules import add_agency, add_agreement, add_official
from custodes.store.tables import ledger_events
from custodes.synthetic.requests import PLACEHOLDER_ADDRESSES
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace

AGENCY = "U.S. Immigration and Customs Enforcement"
TODAY = dt.date(2026, 11, 23)
RS = load()


def envelope(**kw: Any) -> dict[str, Any]:
    env = {
        "provision": "irc-6103-i-2",
        "agency": AGENCY,
        "signer": {"name": "Synthetic Director", "title": "Director", "role": "head_of_agency"},
        "officials": [
            {"id": "OFF-1", "name": "Agent One", "title": "Special Agent"},
            {"id": "OFF-2", "name": "Agent Two", "title": "Special Agent"},
        ],
        "statutory_authority": "8 U.S.C. 1253(c)",
        "reason": "Each person is the subject of an open criminal investigation for failure "
        "to depart after a final order of removal.",
        "taxable_periods": [2023, 2024],
        "fields_requested": ["last_known_address"],
        "items": "items.csv",
    }
    env.update(kw)
    return {k: v for k, v in env.items() if v is not None}


def item(i: int = 1, **kw: str) -> dict[str, str]:
    base = {
        "item_id": f"I{i:04d}",
        "first_name": "ANA",
        "middle_name": "",
        "last_name": "ROE",
        "suffix": "",
        "dob": "1980-01-02",
        "tin": "",
        "street": "12 OAK ST",
        "unit": "",
        "city": "AUSTIN",
        "state": "TX",
        "zip": "78701",
        "case_number": f"C-{i}",
        "official_id": "OFF-1",
        "removal_order_date": "2024-05-01",
    }
    base.update(kw)
    return base


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
    return evaluate(RS, reg or registry(), read_envelope(folder), table, today=TODAY)


def load_items(folder: Path) -> pa.Table:
    return with_optional(read_text_table(folder / "items.csv", ITEM_COLUMNS, allow_extra=True))


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


def test_every_item_check_compiles_for_duckdb_and_spark() -> None:
    for prov in RS.provisions.values():
        eff = overlay(RS, prov, None)
        cols = {"identified", "address_on_record"}
        duck = item_sql(eff, RS, envelope(), cols, "duckdb")
        spark = item_sql(eff, RS, envelope(), cols, "spark")
        assert set(duck) == set(spark)
        for cid in duck:
            sqlglot.parse_one(spark[cid], read="spark")  # valid Spark SQL
            assert "REGEXP_FULL_MATCH" not in spark[cid] and "TRY_STRPTIME" not in spark[cid]


def test_parameters_are_bound_as_literals_not_pasted() -> None:
    """An official id (chosen by the agency) holding quotes, a statement or a comment stays one
    literal in the compiled SQL, on both engines."""
    evil = "OFF-1'); COPY (SELECT 1) TO '/tmp/x'; --\n"
    eff = overlay(RS, RS.provisions["irc-6103-i-2"], None)
    env = envelope(officials=[{"id": evil, "name": "A", "title": "B"}])
    for dialect in ("duckdb", "spark"):
        sql = item_sql(eff, RS, env, set(), dialect)["official-engaged"]
        tree = sqlglot.parse_one(sql, read=dialect)
        literals = [lit.this for lit in tree.find_all(sqlglot.exp.Literal)]
        assert evil in literals and "COPY" not in sql.split("IN")[0]


def _ice() -> Agreement:
    import yaml

    return Agreement.from_dict(
        yaml.safe_load((REFERENCE.parent / "agreements" / "irs-ice-2025.yaml").read_text())
    )


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


# --- lint ------------------------------------------------------------------------------------


@pytest.fixture
def ruleset_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "rs"
    shutil.copytree(REFERENCE, dest)
    return dest


@pytest.mark.parametrize(
    ("file", "old", "new", "at", "message"),
    [
        (
            "irc6103/i-2.yaml",
            "address-substantive,",
            "address-substantial,",
            "address-substantial",
            "unknown check",
        ),
        (
            "irc6103/m-2.yaml",
            "releasable: [mailing_address]",
            "releasable: [unearned_income]",
            "releasable",
            "without requiring a court order",
        ),
        (
            "irc6103/m-2.yaml",
            'citation: "26 U.S.C. 6103(m)(2)"\n',
            "",
            "id:",
            "missing key(s): citation",
        ),
        (
            "checks.yaml",
            'citation: "26 U.S.C. 6103(i)(2)(B)(iii)"',
            'citation: ""',
            "- id: statute-designated",
            "has no citation",
        ),
        (
            "checks.yaml",
            "sql: \"nullif(trim(case_number), '') IS NOT NULL\"",
            "sql: \"nullif(trim(case_number), '') IS NOT (\"",
            "- id: case-number",
            "does not parse",
        ),
        (
            "irc6103/d.yaml",
            "id: irc-6103-d",
            "id: irc-6103-d\n  bad: [",
            "bad: [",
            "not valid YAML",
        ),
        (
            "irc6103/l-6.yaml",
            'note: "Reference reading, not legal advice."',
            'note: ""',
            "note:",
            "not legal advice",
        ),
    ],
)
def test_lint_names_file_line_and_reason(
    ruleset_copy: Path, file: str, old: str, new: str, at: str, message: str
) -> None:
    path = ruleset_copy / file
    text = path.read_text()
    assert old in text
    text = text.replace(old, new, 1)
    path.write_text(text)
    _, problems = lint(ruleset_copy)
    hit = [p for p in problems if message in p.message]
    assert hit, problems
    assert hit[0].file == file
    line = text[: text.index(at)].count("\n") + 1
    assert hit[0].line is not None and line <= hit[0].line <= line + 1, (hit[0], line)
    r = CliRunner().invoke(app, ["rules", "lint", str(ruleset_copy)])
    assert r.exit_code == 1 and message in r.output


# --- registries and CLI ----------------------------------------------------------------------


def test_registries(workspace: Workspace, staff: Staff) -> None:
    admin = staff.admin

    def confirm(proposed: dict) -> None:  # by the second administrator, by the change's id
        users_svc.confirm_change(workspace, staff.second_admin, proposed["change"])

    with pytest.raises(NotFound, match="add it first"):
        add_official(
            workspace,
            admin,
            agency="An Agency Nobody Registered",
            name="X",
            title="Y",
            role="head_of_agency",
            valid_from=TODAY,
        )
    proposed = add_agency(workspace, admin, AGENCY, safeguards_current=True, open_findings=0)
    assert proposed["pending"] and proposed["change"]
    confirm(proposed)
    with pytest.raises(InputError, match="Unknown role"):
        add_official(
            workspace, admin, agency=AGENCY, name="X", title="Y", role="janitor", valid_from=TODAY
        )
    with pytest.raises(InputError, match="before --from"):
        add_official(
            workspace,
            admin,
            agency=AGENCY,
            name="X",
            title="Y",
            role="head_of_agency",
            valid_from=TODAY,
            valid_to=TODAY - dt.timedelta(days=1),
        )
    confirm(
        add_official(
            workspace,
            admin,
            agency=AGENCY,
            name="X",
            title="Y",
            role="head_of_agency",
            valid_from=TODAY,
        )
    )
    confirm(add_agreement(workspace, admin, REFERENCE.parent / "agreements" / "irs-ice-2025.yaml"))
    with pytest.raises(ConflictError):
        add_agreement(workspace, admin, REFERENCE.parent / "agreements" / "irs-ice-2025.yaml")
    with workspace.engine.connect() as conn:
        reg = reg_room.read(conn)
    assert AGENCY in reg.agencies and len(reg.officials) == 1 and "irs-ice-2025" in reg.agreements
    from custodes.ledger.audit import audit_store
    from custodes.store.tables import ledger_events

    rep = audit_store(workspace)
    with workspace.engine.connect() as conn:
        types = [
            r[0]
            for r in conn.execute(sa.select(ledger_events.c.type).order_by(ledger_events.c.idx))
        ]
    assert rep.ok  # every registry change is a ledger event, named by its actor
    assert types.count("registry.agency") == 2 and types.count("registry.official") == 1
    assert types.count("registry.agreement") == 1


def test_what_the_gate_trusts_takes_two_administrators(workspace: Workspace, staff: Staff) -> None:
    """Issue #22, item 4: `officials add`, `agencies add --safeguards-current` and
    `agreements add` each took effect on one administrator's say. Now each is a proposal in
    the queue, in force only when a second administrator confirms that exact change; the
    ledger records both people."""
    admin = staff.admin
    other = "U.S. Department of Justice"
    proposed = add_agency(workspace, admin, other, safeguards_current=True, open_findings=0)
    with workspace.engine.connect() as conn:  # proposed: not in force
        assert other not in reg_room.read(conn).agencies
    with pytest.raises(AccessDenied) as exc:  # not by the administrator who proposed it
        users_svc.confirm_change(workspace, admin, proposed["change"])
    assert exc.value.code == "separation_of_duties"
    queued = {c["id"]: c for c in users_svc.pending_changes(workspace, staff.second_admin)}
    assert queued[proposed["change"]]["kind"] == "agency"
    assert "safeguards current" in queued[proposed["change"]]["summary"]
    # a newer proposal for the same agency supersedes it: the old id confirms nothing
    newer = add_agency(workspace, admin, other, safeguards_current=False, open_findings=3)
    with pytest.raises(ConflictError):
        users_svc.confirm_change(workspace, staff.second_admin, proposed["change"])
    users_svc.confirm_change(workspace, staff.second_admin, newer["change"])
    with workspace.engine.connect() as conn:
        row = reg_room.read(conn).agencies[other]
    assert row["safeguards_current"] is False and row["open_findings"] == 3
    with workspace.engine.connect() as conn:
        body = json.loads(
            conn.execute(
                sa.select(ledger_events.c.body)
                .where(ledger_events.c.type == "registry.agency")
                .order_by(ledger_events.c.idx.desc())
                .limit(1)
            ).scalar()
        )
    assert body["actor"] == "admin2" and body["proposed_by"] == "admin"
    assert body["change_id"] == newer["change"]


def test_rules_cli(master_ws: Workspace, people: Staff, tmp_path: Path, sign_in) -> None:  # type: ignore[no-untyped-def]
    from custodes.services.requests import generate as generate_request

    runner = CliRunner()
    home = ["--home", str(master_ws.home)]
    envs = sign_in(master_ws.home, master_ws.store_url)
    env, admin = envs["officer"], envs["administrator"]
    generate_request(master_ws, people.admin, "irc-6103-i-2", 200, 1, tmp_path / "req")
    r = runner.invoke(app, ["rules", "check", str(tmp_path / "req"), *home, "--json"], env=env)
    assert r.exit_code == 1, r.output  # no registry yet: refused
    out = json.loads(r.stdout)
    assert out["refused"] and out["ruleset_sha256"] == RS.sha256
    assert "ANA" not in r.stdout  # no personal data, only item ids
    second = envs["second_administrator"]
    for cmd in (
        ["agencies", "add", AGENCY, "--safeguards-current"],
        [
            "officials",
            "add",
            "--agency",
            AGENCY,
            "--name",
            "Synthetic Director",
            "--title",
            "Director",
            "--role",
            "head_of_agency",
            "--from",
            "2025-01-01",
        ],
        ["agreements", "add", str(REFERENCE.parent / "agreements" / "irs-ice-2025.yaml")],
    ):
        r = runner.invoke(app, [*cmd, *home, "--json"], env=admin)
        assert r.exit_code == 0, r.output
        change = json.loads(r.stdout)["change"]  # proposed; a second administrator confirms
        r = runner.invoke(app, ["changes", "confirm", change, *home], env=second)
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["rules", "check", str(tmp_path / "req"), *home, "--json"], env=env)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    failing = {v["check"]: v["failing"] for v in out["item"]}
    with open(tmp_path / "req" / "truth.csv") as fh:
        truth = list(csv.DictReader(fh))
    no_addr = sum(
        t["defect"] in ("tin_only", "placeholder_address", "partial_address") for t in truth
    )
    assert failing["address-substantive"] == no_addr
    for cmd in (
        ["agencies", "list"],
        ["officials", "list"],
        ["agreements", "list"],
        ["rules", "list"],
        ["rules", "show", "irc-6103-i-2"],
    ):
        r = runner.invoke(app, [*cmd, *(home if cmd[0] != "rules" else [])], env=env)
        assert r.exit_code == 0, (cmd, r.output)
    r = runner.invoke(app, ["rules", "show", "irc-6103-q"])
    assert r.exit_code == 2 and "unknown_provision" in r.output


@pytest.mark.slow
def test_duckdb_and_spark_give_the_same_verdicts(
    master_ws: Workspace, people: Staff, tmp_path: Path
) -> None:
    """One definition, two engines: every item check compiled for DuckDB and for Spark (local
    mode) gives the same verdict on every item of a generated request."""
    pytest.importorskip("pyspark")
    import duckdb
    from pyspark.sql.types import StringType, StructField, StructType

    from custodes.matching.backends import spark_session
    from custodes.services.requests import generate as generate_request

    generate_request(master_ws, people.admin, "irc-6103-i-2", 400, 7, tmp_path / "req")
    table = load_items(tmp_path / "req")
    env = read_envelope(tmp_path / "req")
    eff = overlay(RS, RS.provisions["irc-6103-i-2"], _ice())
    duck_sql = item_sql(eff, RS, env, set(table.column_names), "duckdb")
    spark_sql = item_sql(eff, RS, env, set(table.column_names), "spark")
    assert set(duck_sql) == set(spark_sql) and len(duck_sql) >= 8
    con = duckdb.connect()
    con.register("items", table)
    spark = spark_session()
    schema = StructType([StructField(c, StringType()) for c in table.column_names])
    spark.createDataFrame(table.to_pylist(), schema).createOrReplaceTempView("items")
    differing, failing = {}, 0
    for cid in duck_sql:
        q = "SELECT item_id, coalesce(({}), FALSE) AS ok FROM items ORDER BY item_id"
        a = con.execute(q.format(duck_sql[cid])).fetchall()
        b = [(r["item_id"], r["ok"]) for r in spark.sql(q.format(spark_sql[cid])).collect()]
        if a != b:
            differing[cid] = sum(x != y for x, y in zip(a, b, strict=True))
        failing += any(not ok for _, ok in a)
    assert not differing, differing
    assert failing >= 4  # the request exercises both verdicts of most checks


def test_court_decisions_are_cited_by_name() -> None:
    """A court decision a check rests on is cited by its case name, not by a date alone (#24)."""
    from custodes.rules.provisions import load

    rs = load()
    cited = [c.citation for c in rs.checks.values() if re.search(r"D\.D\.C\.|Cir\.", c.citation)]
    assert cited and all(" v. " in c for c in cited), cited
