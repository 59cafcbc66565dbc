"""The accounting of disclosures as a reader files it (issue #24, item 8): grouped by request
with the request's reason given once, compact rows, no value broken inside a word, page
numbers and a running header with the ledger size and root hash; the data formats unchanged.

The accounting is computed from ledger event bodies alone, so the test builds the bodies of a
year's disclosures (three requests, 239 disclosures, one recalled) as data: no workspace."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from typing import Any

from custodes.reports import disclosures as disc
from custodes.reports.render import encode
from custodes.reports.source import Entry

REASONS = {
    "req-aaaaaaaaaaaa": "Each listed person is the subject of an open criminal investigation "
    "under the cited statute for failure to depart after a final order of removal; a current "
    "address is needed to locate the person.",
    "req-bbbbbbbbbbbb": "Verification of reported income for the determination of eligibility "
    "for a needs-based benefit programme administered by the agency.",
    "req-cccccccccccc": "Location of a parent for the establishment and enforcement of child "
    "support obligations.",
}
PER_REQUEST = {"req-aaaaaaaaaaaa": 150, "req-bbbbbbbbbbbb": 60, "req-cccccccccccc": 29}
ROOT = "TYXJmH9B5vBwElqZ7xxjNRQaEuFIiqjBBpIQJHE84Fs="


def _ledger() -> list[Entry]:
    t0 = dt.datetime(2026, 12, 6, 6, 43, tzinfo=dt.UTC)
    out: list[Entry] = []

    def add(body: dict[str, Any]) -> None:
        at = t0 + dt.timedelta(seconds=len(out))
        out.append(Entry(len(out), body | {"time": at.isoformat()}))

    add({"type": "master.imported", "master_sha256": "ff9aa9cc3995" + "0" * 52})
    for rid, n in PER_REQUEST.items():
        add(
            {
                "type": "request.received",
                "request_id": rid,
                "items": n + 20,
                "taxable_periods": [2023, 2024],
                "reason_sha256": "0" * 64,
            }
        )
        add(
            {
                "type": "release.done",
                "request_id": rid,
                "recipients": [f"OFF-{i:03d}" for i in range(1, 7)],
            }
        )
        for i in range(n):
            add(
                {
                    "type": "disclosure",
                    "request_id": rid,
                    "item_id": f"item-{i:07d}",
                    "record_id": f"rec-{i:016x}",
                    "fields": ["last_known_address"],
                    "provision": "irc-6103-i-2",
                    "agency": "U.S. Immigration and Customs Enforcement",
                }
            )
    add(
        {
            "type": "disclosure.recalled",
            "request_id": "req-aaaaaaaaaaaa",
            "item_id": "item-0000003",
            "recall_id": "rcl-0123456789ab",
        }
    )
    return out


def _accounting() -> Any:
    doc = disc.accounting(disc.read(_ledger()))
    for r in doc.tables[0].rows:
        r["reason"] = REASONS[r["request_id"]]
    doc.ledger_size = 1000
    doc.ledger_root = ROOT
    return doc


def _pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))


def test_the_accounting_pdf_and_html_are_grouped_by_request_and_compact() -> None:
    doc = _accounting()
    rows = doc.tables[0].rows
    assert len(rows) == 239
    pdf = encode(doc, ".pdf")
    # 239 rows in compact lines, three request headings: a handful of pages, not one per 2 rows
    assert _pages(pdf) <= 2 + len(rows) // 30, _pages(pdf)
    page = encode(doc, ".html").decode()
    for rid, reason in REASONS.items():
        assert page.count(reason) == 1, rid  # the reason once per request, not once per row
        assert page.count(f"{rid}</h3>") == 1
    assert page.count("item-0000003") == 3  # a row per disclosure stays (each request has one)
    assert ROOT in page
    assert "rcl-0123456789ab" in page


def test_no_value_breaks_inside_a_word_and_every_page_is_numbered() -> None:
    from custodes.reports.pdf import layout, running_header

    doc = _accounting()
    pdf = layout(doc)
    assert pdf.tables, "the accounting's rows are laid out as tables"
    for size, widths, padding, texts in pdf.tables:
        pdf.set_font("DejaVu", "", size)
        for line in texts[1:]:
            for w, text in zip(widths, line, strict=True):
                for word in text.split():
                    assert pdf.get_string_width(word) <= w - 2 * padding, (word, w)
    assert pdf.pages_count >= 2
    header = running_header(doc)
    assert "ledger size 1000" in header and ROOT in header and doc.title in header
    # every page says "Page i of n" (the total is filled in when the file is written)
    data = bytes(pdf.output())
    assert _pages(data) == pdf.pages_count


def test_the_data_formats_keep_one_full_row_per_disclosure() -> None:
    """CSV and JSON (what `report verify` reads) keep every column in every row."""
    doc = _accounting()
    rows = list(csv.DictReader(io.StringIO(encode(doc, ".csv").decode("utf-8-sig"))))
    assert len(rows) == 239
    assert {r["reason"] for r in rows} == set(REASONS.values())
    data = json.loads(encode(doc, ".json"))
    table = data["tables"][0]
    assert len(table["rows"]) == 239 and all(r["reason"] for r in table["rows"])
    assert table["group_by"] == "request_id" and data["ledger_root"] == ROOT


def test_the_jct_table_reads_as_english() -> None:
    """One row is '1 row', the year is 'Calendar year: 2026', in the HTML and the PDF (#24)."""
    from custodes.reports.pdf import layout

    doc = disc.jct(disc.read(_ledger()), year=2026)
    doc.ledger_size, doc.ledger_root = 1000, ROOT
    assert len(doc.tables[0].rows) == 1
    page = encode(doc, ".html").decode()
    assert "(1 row)" in page and "(1 rows)" not in page
    assert "Calendar year: 2026." in page
    assert "year: 2026." not in page.replace("Calendar year: 2026.", "")
    assert "recalled as improper" in page
    assert "Issuing office: not named" in page  # the minor item's "no issuing office"
    named = encode(
        disc.jct(disc.read(_ledger()), year=2026, office="Office of Disclosure"), ".html"
    )
    assert b"Issued by: Office of Disclosure." in named
    pdf = layout(doc)
    text = " ".join(t for _, _, _, texts in pdf.tables for line in texts for t in line)
    assert "U.S. Immigration and Customs Enforcement" in text


def test_key_figures_read_as_words_and_every_page_is_numbered() -> None:
    """The request report's figures have labels ("Wrong-person rate, upper bound at 95 %
    confidence", not "Wrong person bound 95") (#24)."""
    from custodes.reports.document import Document, Table
    from custodes.reports.pdf import layout

    doc = Document(
        "request",
        "Request req-aaaaaaaaaaaa: checks, matching, review and release",
        {"request_id": "req-aaaaaaaaaaaa"},
        [Table("Checks", [("check", "Check"), ("failing", "Failing")], [])],
        figures={"items": 150, "wrong_person_bound_95": "≤ 2.3077%", "review_rate_percent": 1.5},
    )
    doc.ledger_size, doc.ledger_root = 1000, ROOT
    page = encode(doc, ".html").decode()
    assert "Wrong-person rate, upper bound at 95 % confidence" in page
    assert "Wrong person bound 95" not in page and "Review rate (%)" in page
    # the footer ("Page i of n") is every report's, checked on the accounting above
    pdf = layout(doc)
    assert _pages(bytes(pdf.output())) == pdf.pages_count >= 1


def test_columns_sharing_the_page_in_proportion_are_laid_out_when_their_sum_rounds_above_it() -> (
    None
):
    """The shares of the page's width add up to it give or take a rounding error; fpdf refused
    one above it (a 20,000-row accounting could not be written as a PDF: bench/reports.py)."""
    import random

    from custodes.reports import pdf as P

    doc = _accounting()
    page = P.layout(doc)  # a laid-out report: its fonts and page are set up
    rng = random.Random(3)
    over = None
    for _ in range(500):
        texts = [["A", "B", "C", "D", "E"]] + [
            [" ".join("x" * rng.randint(1, 12) for _ in range(rng.randint(1, 6))) for _ in range(5)]
            for _ in range(3)
        ]
        if sum(P.column_widths(page, texts, page.epw)) > page.epw:
            over = texts
            break
    assert over is not None, "no case whose shares round above the page width was found"
    rows = [dict(zip("abcde", line, strict=True)) for line in over[1:]]
    P._table(page, list(zip("abcde", over[0], strict=True)), rows)  # no ValueError from fpdf


def test_the_csv_converts_a_column_at_a_time_as_it_would_cell_by_cell() -> None:
    from custodes.reports.render import _column, _text

    columns = [
        ["a", None, "", "=1+1"],
        [1, None, 87, 2**70],
        [True, False, None],
        [["x", "y"], [], None, ["z"]],
        [[2024, 2025], []],
        [None, None],
        [1.5, 2, "b"],
        [True, 1],
        [["a", 1]],
        [[None, "a"]],
        [{"k": 1}, "v"],
    ]
    for values in columns:
        assert _column(values).to_pylist() == [_text(v) for v in values], values
