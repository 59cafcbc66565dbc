"""`requests generate`: the interchange format, with ground truth tied to the master file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest

from custodes.errors import ConflictError, InputError
from custodes.records import master
from custodes.requests.format import ITEM_COLUMNS, read_envelope
from custodes.services.requests import generate as generate_request
from custodes.services.requests import submit
from custodes.synthetic import corrupt
from custodes.synthetic.requests import PLACEHOLDER_ADDRESSES
from custodes.synthetic.staff import Staff
from custodes.workspace import Workspace


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_request_shape_and_truth(master_ws: Workspace, tmp_path: Path, people: Staff) -> None:
    result = generate_request(
        master_ws, people.admin, "irc-6103-i-2", 1500, seed=2, out=tmp_path / "r"
    )
    env = read_envelope(tmp_path / "r")
    assert env["provision"] == "irc-6103-i-2" and env["items"] == "items.csv"
    assert env["fields_requested"] == ["last_known_address"]
    items = read(tmp_path / "r" / "items.csv")
    truth = {t["item_id"]: t for t in read(tmp_path / "r" / "truth.csv")}
    assert len(items) == 1500 == len(truth)
    assert list(items[0])[: len(ITEM_COLUMNS)] == list(ITEM_COLUMNS)
    assert "removal_order_date" in items[0]
    assert sum(result.by_defect.values()) == 1500
    for kind in (
        "none",
        "tin_only",
        "placeholder_address",
        "absent_relative",
        "absent_stranger",
        "stale_address",
        "name_variant",
    ):
        assert result.by_defect.get(kind, 0) > 0, kind
    on_file = {
        r[0]
        for r in duckdb.sql(
            f"SELECT record_id FROM '{master.current(master_ws).path('people')}'"
        ).fetchall()
    }
    for item in items:
        t = truth[item["item_id"]]
        if t["defect"].startswith("absent"):
            assert t["record_id"] == ""
        else:
            assert t["record_id"] in on_file
        if t["defect"] == "tin_only":
            assert item["tin"] and not (item["street"] or item["city"] or item["zip"])
        if t["defect"] == "placeholder_address":
            assert item["street"] in {p[0] for p in PLACEHOLDER_ADDRESSES}
    # One official named on most items: the pattern the rules must flag.
    top = max(sum(i["official_id"] == o for i in items) for o in {i["official_id"] for i in items})
    assert top > 0.5 * len(items)


def test_absent_relatives_live_with_a_filer(
    master_ws: Workspace, tmp_path: Path, people: Staff
) -> None:
    generate_request(master_ws, people.admin, "irc-6103-i-2", 800, seed=9, out=tmp_path / "r")
    items = {i["item_id"]: i for i in read(tmp_path / "r" / "items.csv")}
    truth = read(tmp_path / "r" / "truth.csv")
    pop = master.current(master_ws).path("population")
    rel = [items[t["item_id"]] for t in truth if t["defect"] == "absent_relative"]
    assert rel
    for item in rel[:20]:
        n = duckdb.sql(
            f"""SELECT count(*) FROM '{pop}' WHERE filer AND street = ?
                           AND zip = ?""",
            params=[item["street"], item["zip"]],
        ).fetchall()[0][0]
        assert n >= 1


def test_deterministic(master_ws: Workspace, tmp_path: Path, people: Staff) -> None:
    for d in ("a", "b"):
        generate_request(master_ws, people.admin, "irc-6103-m-2", 300, seed=4, out=tmp_path / d)
    for f in ("items.csv", "truth.csv", "envelope.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    env = json.loads((tmp_path / "a" / "envelope.json").read_text())
    assert env["fields_requested"] == ["mailing_address"]


@pytest.mark.parametrize("mix", ["typical", "heavy"])
def test_corruption_mix(master_ws: Workspace, tmp_path: Path, people: Staff, mix: str) -> None:
    """A corruption mix modifies about its share of the items, records every modification in
    the truth file, keeps the items valid for intake, and is reproducible from the seed."""
    for d in ("a", "b"):
        generate_request(
            master_ws, people.admin, "irc-6103-i-2", 1000, seed=3, out=tmp_path / d,
            corruption=mix,
        )  # fmt: skip
    for f in ("items.csv", "truth.csv"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    plain = tmp_path / "plain"
    generate_request(master_ws, people.admin, "irc-6103-i-2", 1000, seed=3, out=plain)
    truth = read(tmp_path / "a" / "truth.csv")
    done = [t["corruptions"] for t in truth]
    share = sum(1 for d in done if d) / len(done)
    assert abs(share - corrupt.MIXES[mix].share) < 0.06, share
    kinds = {x.split(":")[0] for d in done for x in d.split(";") if x}
    assert {"ocr", "keyboard", "phonetic", "swapped", "missing", "transposed"} <= kinds
    assert max(len(d.split(";")) for d in done) <= corrupt.MIXES[mix].max_modifications
    # an item with no recorded modification is exactly the uncorrupted item
    items, base = read(tmp_path / "a" / "items.csv"), read(plain / "items.csv")
    for t, a, b in zip(truth, items, base, strict=True):
        assert (a == b) == (not t["corruptions"]), (t, a, b)
    assert read(plain / "truth.csv")[0]["corruptions"] == ""
    assert submit(master_ws, people["requester"], tmp_path / "a").items == 1000


def test_refusals(
    master_ws: Workspace, workspace: Workspace, tmp_path: Path, people: Staff, staff: Staff
) -> None:
    with pytest.raises(InputError, match="Unknown provision"):
        generate_request(master_ws, people.admin, "irc-6103-z-9", 10, 1, tmp_path / "x")
    with pytest.raises(InputError, match="Unknown corruption mix") as bad:
        generate_request(
            master_ws, people.admin, "irc-6103-i-2", 10, 1, tmp_path / "x", corruption="worst"
        )
    assert bad.value.code == "bad_argument"
    with pytest.raises(ConflictError) as exc:
        generate_request(workspace, staff.admin, "irc-6103-i-2", 10, 1, tmp_path / "y")
    assert exc.value.code == "no_master_file"
    generate_request(master_ws, people.admin, "irc-6103-i-2", 10, 1, tmp_path / "z")
    with pytest.raises(ConflictError):
        generate_request(master_ws, people.admin, "irc-6103-i-2", 10, 1, tmp_path / "z")


def test_never_drawn_from_real_people(workspace: Workspace, staff: Staff, tmp_path: Path) -> None:
    """A master file that holds imported people is never used for synthetic requests (the
    generator would write real TINs, birth dates and addresses into files)."""
    from custodes.services.records import import_

    (tmp_path / "p.csv").write_text(
        "tin,tin_type,first_name,middle_name,last_name,suffix,dob\n"
        "123456789,SSN,ANA,,ROE,,1980-01-02\n"
    )
    (tmp_path / "a.csv").write_text(
        "tin,tax_year,street,unit,city,state,zip\n123456789,2024,12 OAK ST,,AUSTIN,TX,78701\n"
    )
    from custodes.services.users import confirm_change

    imported = import_(workspace, staff.admin, tmp_path / "p.csv", tmp_path / "a.csv")
    confirm_change(workspace, staff.second_admin, imported["change"])  # a second administrator
    with pytest.raises(ConflictError) as exc:
        generate_request(workspace, staff.admin, "irc-6103-i-2", 10, 1, tmp_path / "r")
    assert exc.value.code == "real_master_file"
    assert not (tmp_path / "r" / "items.csv").exists()
