"""The linkage model: a Fellegi–Sunter model in Splink, its training and its persistence.

The model compares a request item with a master-file person on first name and surname (with
term-frequency adjustments), date of birth, TIN and the address (house, street, ZIP, city). It
is trained unsupervised: the prior from deterministic rules, u by random sampling of pairs, m by
expectation maximisation on blocked pairs between the master file and a request's items (the
master file alone holds no duplicates, so it cannot teach how a request's fields disagree with
the record of the same person; see docs/decisions/2026-11-24-matching-training.md).

A trained model is a JSON file ``models/<sha256>.json`` in the workspace: Splink's settings and
parameters plus custodes' decision thresholds. Its hash is recorded with every match result, so
every decision can be replayed under the exact model that made it. ``models/CURRENT`` names the
model in force; retraining is explicit (``custodes match train``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from custodes import settings as config
from custodes.errors import InputError, fail
from custodes.workspace import Workspace

# Columns both sides give to Splink (identical on both sides, as link_only requires).
MODEL_COLUMNS = (
    "uid",
    "first",
    "middle",
    "last",
    "dob",
    "tin",
    "house",
    "street",
    "zip5",
    "city",
    "state",
)
MASTER = "master"
REQUEST = "request"


@dataclass(frozen=True)
class Thresholds:
    """When an item counts as identified. Defaults come from measurements (docs/performance.md).

    - ``min_probability``: the best candidate's match probability must reach this;
    - ``min_margin_bits``: and beat the runner-up by this many bits of match weight;
    - ``review_probability``: below the identification rule, a best candidate at or above this
      goes to an officer for review; below it the item is *not identified*;
    - ``floor_probability``: pairs below this are not kept (a missing runner-up counts as this);
    - ``first_name_similarity``: Jaro–Winkler similarity at which a first name counts as close
      (a typo); close counts in the person gate with a TIN or middle name that agrees, or as a
      misspelling that is nobody's name with the date of birth exact and the surname agreeing;
    - ``generation_years``: dates of birth this many years apart or more are a generation apart
      (a Jr and his father): never one person's date mistyped or replaced, unless the TIN agrees;
    - ``namesake_margin_bits``: when neither a TIN nor the address supports a match, the name
      and date of birth must carry log2(master size) + log2(number of such items) + this many
      bits, so that across the request the expected number of identifications of a same-day
      namesake is below 2^-margin.
    """

    min_probability: float = 0.99
    min_margin_bits: float = 3.0
    review_probability: float = 0.5
    floor_probability: float = 0.01
    first_name_similarity: float = 0.92
    namesake_margin_bits: float = 0.0
    generation_years: float = 15.0

    def validate(self) -> Thresholds:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("min_margin_bits", "namesake_margin_bits"):
                ok = 0 <= value <= 60
            elif f.name == "first_name_similarity":
                ok = 0.5 <= value <= 1
            elif f.name == "generation_years":
                ok = 5 <= value <= 40
            else:
                ok = 0 < value < 1
            if not ok:
                raise InputError(
                    f"Threshold {f.name} = {value} is out of range.", code="bad_threshold"
                )
        if self.review_probability > self.min_probability:
            raise InputError(
                "review_probability must not exceed min_probability.", code="bad_threshold"
            )
        if self.floor_probability > self.review_probability:
            raise InputError(
                "floor_probability must not exceed review_probability.", code="bad_threshold"
            )
        return self

    def replace(self, **changes: float | None) -> Thresholds:
        kept = {k: v for k, v in changes.items() if v is not None}
        return Thresholds(**(asdict(self) | kept)).validate()


@dataclass
class Model:
    """A trained model: Splink's settings and parameters, custodes' thresholds, provenance."""

    splink: dict[str, Any]
    thresholds: Thresholds
    master_sha256: str
    trained_on: str | None
    trained_at: str
    training: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {
            "format": "custodes-model/1",
            "thresholds": asdict(self.thresholds),
            "master_sha256": self.master_sha256,
            "trained_on": self.trained_on,
            "trained_at": self.trained_at,
            "training": self.training,
            "splink": self.splink,
        }

    def canonical(self) -> bytes:
        return json.dumps(self.document(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Model:
        if doc.get("format") != "custodes-model/1":
            raise fail("bad_model", "Not a custodes model file.")
        return cls(
            splink=doc["splink"],
            thresholds=Thresholds(**doc["thresholds"]).validate(),
            master_sha256=doc["master_sha256"],
            trained_on=doc.get("trained_on"),
            trained_at=doc["trained_at"],
            training=doc.get("training", {}),
        )


def settings() -> Any:
    """The comparisons and blocking rules (a Splink SettingsCreator)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import ColumnExpression, SettingsCreator

    tin = cl.CustomComparison(
        output_column_name="tin",
        comparison_description="TIN",
        comparison_levels=[
            cll.NullLevel("tin"),
            cll.ExactMatchLevel("tin"),
            cll.DamerauLevenshteinLevel("tin", 1),
            cll.ElseLevel(),
        ],
    )
    # Middle names are often initials: exact, same initial, or different.
    middle = cl.CustomComparison(
        output_column_name="middle",
        comparison_description="Middle name",
        comparison_levels=[
            cll.NullLevel("middle"),
            cll.ExactMatchLevel("middle").configure(tf_adjustment_column="middle"),
            cll.ExactMatchLevel(ColumnExpression("middle").substr(1, 1)).configure(
                label_for_charts="Same initial"
            ),
            cll.ElseLevel(),
        ],
    )
    address = cl.CustomComparison(
        output_column_name="address",
        comparison_description="Address (house, street, ZIP, city)",
        comparison_levels=[
            # No address to compare: no street, no ZIP and no city on one side. A partial
            # address (ZIP only, city only) is still evidence and falls to the levels below.
            cll.And(cll.NullLevel("street"), cll.NullLevel("zip5"), cll.NullLevel("city")),
            cll.And(
                cll.ExactMatchLevel("house"),
                cll.ExactMatchLevel("street"),
                cll.ExactMatchLevel("zip5"),
            ).configure(label_for_charts="Same house, street and ZIP"),
            cll.And(
                cll.ExactMatchLevel("house"),
                cll.DamerauLevenshteinLevel("street", 2),
                cll.Or(cll.ExactMatchLevel("zip5"), cll.ExactMatchLevel("city")),
            ).configure(label_for_charts="Same house, street within 2 edits, same ZIP or city"),
            cll.ExactMatchLevel("zip5").configure(label_for_charts="Same ZIP only"),
            cll.And(cll.ExactMatchLevel("city"), cll.ExactMatchLevel("state")).configure(
                label_for_charts="Same city and state only"
            ),
            cll.ElseLevel(),
        ],
    )
    return SettingsCreator(
        link_type="link_only",
        unique_id_column_name="uid",
        probability_two_random_records_match=1e-6,
        comparisons=[
            name_comparison("first", "last"),
            name_comparison("last", "first"),
            middle,
            cl.DateOfBirthComparison("dob", input_is_string=True),
            tin,
            address,
        ],
        blocking_rules_to_generate_predictions=blocking_rules(),
        retain_intermediate_calculation_columns=True,
        retain_matching_columns=False,
        max_iterations=20,
        em_convergence=0.001,
    )


def name_comparison(col: str, other: str) -> Any:
    """Splink's name comparison (exact with term frequencies, Jaro-Winkler 0.92 / 0.88 /
    0.7) with one more level after exact: the two names written in each other's fields (a
    list with first and last names swapped, or family name first). Both, not either: with
    "either", one name shared across the fields (an item's last name that is a record's first
    name, JAMES and JAMES) gave both comparisons this level's weight, ≈ 19 bits for one
    coincidence, and at 25M people two strangers passed the person gate on it."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name=col,
        comparison_description=f"{col.capitalize()} name",
        comparison_levels=[
            cll.NullLevel(col),
            cll.ExactMatchLevel(col).configure(tf_adjustment_column=col),
            cll.CustomLevel(
                f"{col}_l = {other}_r AND {col}_r = {other}_l",
                label_for_charts=f"{col.capitalize()} and {other} names in each other's fields",
            ),
            cll.JaroWinklerLevel(col, 0.92),
            cll.JaroWinklerLevel(col, 0.88),
            cll.JaroWinklerLevel(col, 0.7),
            cll.ElseLevel(),
        ],
    )


def for_dialect(trained: dict[str, Any], dialect: str) -> dict[str, Any]:
    """The trained model as a settings dict for another SQL dialect (e.g. spark).

    Splink writes its saved model's SQL in the dialect it was trained on; the parameters are
    dialect-free. So the comparisons are rebuilt for the target dialect and the trained prior,
    m and u values copied level by level (the structure is the same by construction).
    """
    if trained.get("sql_dialect") == dialect:
        return trained
    target: dict[str, Any] = settings().create_settings_dict(sql_dialect_str=dialect)
    target["probability_two_random_records_match"] = trained["probability_two_random_records_match"]
    for new, old in zip(target["comparisons"], trained["comparisons"], strict=True):
        levels = zip(new["comparison_levels"], old["comparison_levels"], strict=True)
        for new_level, old_level in levels:
            for key in ("m_probability", "u_probability", "tf_adjustment_weight"):
                if key in old_level:
                    new_level[key] = old_level[key]
    target["sql_dialect"] = dialect
    return target


def blocking_rules() -> list[Any]:
    """'Tight' blocking (MATCHING.md §2.3): same recall as wide blocking, a third of the pairs."""
    from splink import block_on

    return [
        block_on("tin"),
        block_on("dob", "substr(first, 1, 1)"),
        block_on("dob", "substr(last, 1, 1)"),
        block_on("first", "last"),
        block_on("zip5", "house"),
        block_on("last", "substr(dob, 1, 4)"),
        # first and last name written the other way round
        "l.first = r.last AND l.last = r.first",
        # a TIN with a typo in its second or first half
        block_on("substr(tin, 1, 5)", "substr(dob, 1, 4)"),
        block_on("substr(tin, 5, 5)", "substr(last, 1, 1)"),
    ]


def log_level() -> int:
    """Splink logs at INFO (and warns of levels EM never saw); custodes shows its own progress
    bars and summaries, and Splink's chatter only with CUSTODES_DEBUG."""
    return logging.DEBUG if config.flag("CUSTODES_DEBUG") else logging.ERROR


def quiet_splink() -> None:
    logging.getLogger("splink").setLevel(log_level())


def train_linker(
    linker: Any, *, master_rows: int, request_rows: int, seed: int = 1
) -> dict[str, Any]:
    """Estimate the prior, u and m on a linker holding the master file and a request."""
    from splink import block_on

    quiet_splink()
    # Prior: deterministic rules with a recall guess. Splink's docs show a wrong guess moves the
    # prior by under half a bit; it is also what the EM sessions then refine.
    linker.training.estimate_probability_two_random_records_match(
        [block_on("tin"), block_on("first", "last", "dob")], recall=0.8
    )
    max_pairs = int(min(5e6, max(1e5, master_rows * request_rows / 50)))
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
    em_pairs = int(min(2e6, max(1e5, request_rows * 20)))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("dob"), estimate_without_term_frequencies=True, max_pairs=em_pairs
    )
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first", "last"), estimate_without_term_frequencies=True, max_pairs=em_pairs
    )
    return {"u_max_pairs": max_pairs, "em_max_pairs": em_pairs, "seed": seed}


# An m probability under this means EM saw no match at the level (it tends to 0 there).
DEGENERATE_M = 1e-6


def monotone_weights(splink_doc: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Raise the match weight of levels EM never saw among matches to that of the next less
    similar level; return the changed doc and what was raised.

    EM estimates each level's m from the pairs it takes for matches; a level it saw among
    matches not at all (a first name at Jaro-Winkler 0.88 in a small request) gets m near 0
    and a weight far below "all other comparisons" (measured: -47 bits against -7.9), so a
    closer name counts as stronger evidence *against* than a different one and the wrong
    household member ranks first. Walking each comparison's levels from the least similar up,
    such a level (m below `DEGENERATE_M`) is raised to the weight of the level below it: it
    never counts more than EM gave a less similar level. A level EM did see keeps its weight
    even when it is lower — a date of birth under ten years off is a sibling's more often
    than a typo's, and EM learns exactly that. Hand-written: Splink has no such constraint.
    The "name in the other field" level is not on the similarity scale and is left as
    trained; so are null levels.
    """
    doc = json.loads(json.dumps(splink_doc))
    raised = []
    for comp in doc.get("comparisons", []):
        chain = [
            lv
            for lv in comp["comparison_levels"]
            if not lv.get("is_null_level")
            and "field" not in str(lv.get("label_for_charts", ""))
            and lv.get("m_probability")
            and lv.get("u_probability")
        ]
        floor = None
        for lv in reversed(chain):
            w = math.log2(lv["m_probability"] / lv["u_probability"])
            if floor is not None and w < floor and lv["m_probability"] < DEGENERATE_M:
                lv["m_probability"] = lv["u_probability"] * 2**floor
                raised.append(
                    {
                        "comparison": comp.get("output_column_name"),
                        "level": lv.get("label_for_charts"),
                        "from_bits": round(w, 2),
                        "to_bits": round(floor, 2),
                    }
                )
                w = floor
            floor = w
    return doc, raised


# ---------------------------------------------------------------------------------------------
# Persistence


def models_dir(ws: Workspace) -> Path:
    return ws.home / "models"


def save(ws: Workspace, model: Model) -> str:
    """Write the model as ``models/<sha>.json`` and make it current (atomic)."""
    folder = models_dir(ws)
    folder.mkdir(parents=True, exist_ok=True)
    sha = model.sha256
    path = folder / f"{sha}.json"
    if not path.exists():
        tmp = folder / f".{sha}.tmp"
        tmp.write_bytes(model.canonical())
        os.replace(tmp, path)
    pointer = folder / "CURRENT.tmp"
    pointer.write_text(sha + "\n")
    os.replace(pointer, folder / "CURRENT")
    return sha


def trained(ws: Workspace) -> bool:
    """Whether the workspace has a current model."""
    return (models_dir(ws) / "CURRENT").exists()


def load(ws: Workspace, sha: str | None = None) -> Model:
    """The current model (or the one with hash `sha`); refuse clearly when there is none."""
    folder = models_dir(ws)
    if sha is None:
        pointer = folder / "CURRENT"
        if not pointer.exists():
            raise fail(
                "no_model",
                "No linkage model is trained yet: run 'custodes match train' (it learns from "
                "the master file and a received request).",
            )
        sha = pointer.read_text().strip()
    path = folder / f"{sha}.json"
    if not path.exists():
        raise fail("no_model", f"No model {sha[:12]} in the workspace.")
    data = path.read_bytes()
    model = Model.from_document(json.loads(data))
    if model.sha256 != sha:
        raise fail(
            "model_tampered", f"Model file {path.name} does not match its hash: it was changed."
        )
    return model


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
