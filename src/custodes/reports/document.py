"""A report as data (tables, key figures, charts, notes), with the formatting its files share.

One shape for every report, so that each format is written once (`reports.render`) and `report
verify` can read a CSV or JSON report back and compare it, figure by figure, with a
recomputation.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
from dataclasses import asdict, dataclass, field, fields
from typing import Any, overload


@dataclass
class Table:
    title: str
    columns: list[tuple[str, str]]  # (key, label)
    rows: list[dict[str, Any]]
    total: dict[str, Any] | None = None  # a last row of totals, keyed like the rows
    # For reading (HTML, PDF): rows with the same `group_by` value are shown together under
    # one heading that gives the `group_columns` once (a request's reason, its recipients…).
    # The data (CSV, JSON) keeps one full row each.
    group_by: str | None = None
    group_columns: tuple[str, ...] = ()


@dataclass
class Group:
    """One group of a grouped table: its heading (label, value) pairs, the columns left to its
    rows, and the rows."""

    key: Any
    heading: list[tuple[str, str, Any]]  # (key, label, value)
    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]]


def groups(t: Table) -> list[Group]:
    """A grouped table's groups, in the order they first appear. A group column whose value
    differs between a group's rows stays a column of that group's rows (nothing is hidden)."""
    assert t.group_by is not None
    by: dict[Any, list[dict[str, Any]]] = {}
    for r in t.rows:
        by.setdefault(_hashable(r.get(t.group_by)), []).append(r)
    labels = dict(t.columns)
    out = []
    for key, rows in by.items():
        shared = [
            k
            for k in (t.group_by, *t.group_columns)
            if k in labels and all(r.get(k) == rows[0].get(k) for r in rows)
        ]
        out.append(
            Group(
                key,
                [(k, labels[k], rows[0].get(k)) for k in shared],
                [(k, label) for k, label in t.columns if k not in shared],
                rows,
            )
        )
    return out


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


@dataclass
class Chart:
    """A bar chart (labels along the bottom, one value each). `alt` is its text alternative."""

    title: str
    labels: list[str]
    values: list[float]
    xlabel: str
    ylabel: str
    alt: str


@dataclass
class Document:
    kind: str  # accounting, jct, person, request, recalls, safeguards, incident
    title: str
    parameters: dict[str, Any]
    tables: list[Table]
    figures: dict[str, Any] = field(default_factory=dict)  # key figures, by name
    notes: list[str] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    ledger_size: int | None = None  # the events it was computed from: indexes below this
    # The ledger's root hash at that size (base64, as a checkpoint writes it): a reader checks
    # the report against any checkpoint of the same size.
    ledger_root: str | None = None
    generated_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )

    def to_json(self) -> dict[str, Any]:
        """The document as JSON-ready data. Not `dataclasses.asdict`: that deep-copies every
        row (a million-row accounting took longer to copy than to compute); the rows here are
        the document's own dicts, shared."""
        doc: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "tables":
                v = [_table_json(t) for t in v]
            elif f.name == "charts":
                v = [asdict(c) for c in v]
            elif isinstance(v, (dict, list)):
                v = copy.deepcopy(v)
            doc[f.name] = v
        return doc


def _table_json(t: Table) -> dict[str, Any]:
    return {
        "title": t.title,
        "columns": [{"key": k, "label": label} for k, label in t.columns],
        "rows": list(t.rows),
        "total": copy.deepcopy(t.total),
        "group_by": t.group_by,
        "group_columns": list(t.group_columns),
    }


def us_count(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def rows_count(n: int) -> str:
    """'1 row', '2 rows', '1,000 rows'."""
    return f"{us_count(n)} row" + ("" if n == 1 else "s")


# How a report's parameters read in its header ("Calendar year: 2026"), not its keys.
PARAMETER_LABELS = {
    "year": "Calendar year",
    "agency": "Agency",
    "provision": "Provision",
    "as_of": "As of",
    "record_id": "Record",
    "view": "View",
    "with_tins": "With TINs",
    "request_id": "Request",
}


# How a key figure reads ("Wrong-person rate, upper bound at 95 % confidence"), not its key.
FIGURE_LABELS = {
    "wrong_person_bound_95": "Wrong-person rate, upper bound at 95 % confidence",
    "review_rate_percent": "Review rate (%)",
    "reviews_resolved_disclose": "Reviews resolved by disclosing",
    "reviews_resolved_withhold": "Reviews resolved by withholding",
    "disclosures_recalled": "Disclosures recalled",
    "actions_by_suspended_users": "Actions by suspended users",
}


def figure_label(key: str) -> str:
    return FIGURE_LABELS.get(key) or key.replace("_", " ").capitalize()


def parameters_text(params: dict[str, Any]) -> str:
    """The parameters as one sentence: 'Calendar year: 2026; agency: …'."""
    parts = [
        f"{PARAMETER_LABELS.get(k, k.replace('_', ' ').capitalize())}: {cell(v, k)}"
        for k, v in params.items()
        if v is not None and v is not False
    ]
    return ("; ".join(parts) + ".") if parts else ""


@overload
def us_date(v: str) -> str: ...
@overload
def us_date(v: object) -> object: ...
def us_date(v: object) -> object:
    """ISO dates and times as US readers write them (MM/DD/YYYY); anything else unchanged."""
    if isinstance(v, str) and len(v) >= 10 and v[4] == "-" and v[7] == "-":
        try:
            d = dt.date.fromisoformat(v[:10])
        except ValueError:
            return v
        return d.strftime("%m/%d/%Y") + (f" {v[11:16]} UTC" if len(v) > 10 else "")
    return v


# Numbers that are names, not quantities: never written with thousands separators.
IDENTIFIERS = frozenset({"year", "ledger_index", "tax_periods", "ledger_size"})


def cell(v: Any, key: str = "") -> str:
    if key in IDENTIFIERS and isinstance(v, int):
        return str(v)
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return "; ".join(str(x) for x in v)
    return us_date(us_count(v))


def chart_svg(c: Chart) -> str:
    return _plot(c, "svg").decode()


def chart_png(c: Chart) -> bytes:
    return _plot(c, "png")


def _plot(c: Chart, fmt: str) -> bytes:
    """Bars in one dark grey with hatching and values written on them: readable in greyscale
    and without colour vision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    try:
        bars = ax.bar(
            range(len(c.values)), c.values, color="#3d4551", hatch="//", edgecolor="white"
        )
        ax.set_xticks(
            range(len(c.labels)),
            c.labels,
            rotation=30 if len(c.labels) > 6 else 0,
            ha="right" if len(c.labels) > 6 else "center",
            fontsize=8,
        )
        ax.set_xlabel(c.xlabel)
        ax.set_ylabel(c.ylabel)
        ax.set_title(c.title, fontsize=10)
        ax.bar_label(
            bars,
            labels=[us_count(int(v)) if float(v).is_integer() else f"{v:.2f}" for v in c.values],
            fontsize=7,
        )
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
        return buf.getvalue()
    finally:
        plt.close(fig)
