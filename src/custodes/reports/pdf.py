"""A report as a PDF for filing (fpdf2: pure Python, no system libraries; the DejaVu font that
matplotlib ships covers any name an agency may have; charts as images with their text
alternative).

Every page carries a running header (the report, the ledger size it was computed from and the
ledger's root hash at that size) and "Page i of n". A grouped table (the accounting: one group
per request) gives each group's shared values once, under a heading, and then compact rows.
Columns are as wide as their longest word at least, so that no date, id or hash is broken
inside; the rest of the width goes to the columns with long text.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import matplotlib
from fpdf import FPDF
from fpdf.fonts import FontFace

from custodes.reports.document import (
    Document,
    Table,
    cell,
    chart_png,
    figure_label,
    groups,
    parameters_text,
    rows_count,
    us_count,
    us_date,
)

_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
CELL_PADDING = 0.6  # mm around a table cell's text
PADDING = 2.2  # mm a cell needs beyond its text (fpdf's cell padding on both sides, and a bit)
HEAD = FontFace(emphasis="BOLD", fill_color=(240, 240, 240))


class _Filed(FPDF):
    """A page with the running header and the page number."""

    running = ""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        # each table as laid out: (font size, column widths, padding, cell texts)
        self.tables: list[tuple[float, list[float], float, list[list[str]]]] = []

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font("DejaVu", "", 7)
        self.set_text_color(80, 80, 80)
        self.cell(0, 4, self.running, new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)
        self.ln(1)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font("DejaVu", "", 7)
        self.set_text_color(80, 80, 80)
        self.cell(0, 4, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def running_header(doc: Document) -> str:
    parts = [doc.title]
    if doc.ledger_size is not None:
        parts.append(f"ledger size {doc.ledger_size}")
    if doc.ledger_root:
        parts.append(f"root {doc.ledger_root}")
    return " · ".join(parts)


def render_pdf(doc: Document) -> bytes:
    return bytes(layout(doc).output())


def layout(doc: Document) -> _Filed:
    """The report laid out on pages (`render_pdf` writes it)."""
    grouped = any(t.group_by for t in doc.tables)
    pdf = _Filed(orientation="P" if grouped else "L", unit="mm", format="Letter")
    pdf.running = running_header(doc)
    pdf.set_title(doc.title)
    pdf.set_lang("en-US")
    pdf.set_creator("custodes")
    pdf.set_creation_date(dt.datetime.fromisoformat(doc.generated_at))
    pdf.add_font("DejaVu", "", str(_FONTS / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(_FONTS / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(True, margin=14)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 14)
    pdf.multi_cell(0, 7, doc.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 9)
    params = parameters_text(doc.parameters)
    root = f" Ledger root hash at that size: {doc.ledger_root}." if doc.ledger_root else ""
    pdf.multi_cell(
        0,
        5,
        f"Generated {us_date(doc.generated_at)} from the ledger's first "
        f"{us_count(doc.ledger_size)} events.{root} {params}",
        align="L",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    if doc.figures:
        _heading(pdf, "Key figures")
        for k, v in doc.figures.items():
            pdf.multi_cell(
                0,
                5,
                f"{figure_label(k)}: {cell(v)}",
                new_x="LMARGIN",
                new_y="NEXT",
            )
    for c in doc.charts:
        pdf.ln(3)
        pdf.image(io.BytesIO(chart_png(c)), w=170, alt_text=f"{c.title}. {c.alt}")
        pdf.set_font("DejaVu", "", 8)
        pdf.multi_cell(0, 4, f"{c.title}. {c.alt}", new_x="LMARGIN", new_y="NEXT")
    for t in doc.tables:
        _heading(pdf, f"{t.title} ({rows_count(len(t.rows))})")
        if t.group_by:
            _grouped(pdf, t)
        else:
            pdf.set_font("DejaVu", "", 7 if len(t.columns) > 8 else 8)
            _table(pdf, t.columns, t.rows + ([t.total] if t.total else []))
    if doc.notes:
        _heading(pdf, "Notes")
        for i, n in enumerate(doc.notes, start=1):
            pdf.multi_cell(0, 5, f"{i}. {n}", new_x="LMARGIN", new_y="NEXT")
    return pdf


def _grouped(pdf: _Filed, t: Table) -> None:
    for g in groups(t):
        # keep a group's heading with its first rows
        if pdf.will_page_break(8 + 4 * len(g.heading) + 10):
            pdf.add_page()
        pdf.ln(2)
        pdf.set_font("DejaVu", "B", 9)
        first = g.heading[0]
        pdf.multi_cell(
            0, 5, f"{first[1]}: {cell(first[2], first[0])}", new_x="LMARGIN", new_y="NEXT"
        )
        pdf.set_font("DejaVu", "", 8)
        for k, label, v in g.heading[1:]:
            pdf.multi_cell(
                0, 4, f"{label}: {cell(v, k) or '—'}", align="L", new_x="LMARGIN", new_y="NEXT"
            )
        pdf.ln(1)
        _table(pdf, g.columns, g.rows)


def _table(pdf: _Filed, columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> None:
    texts = [[label for _, label in columns]] + [
        [cell(r.get(k), k) for k, _ in columns] for r in rows
    ]
    widths = column_widths(pdf, texts, pdf.epw)
    pdf.tables.append((pdf.font_size_pt, widths, CELL_PADDING, texts))
    with pdf.table(
        col_widths=widths,
        # The shares add up to the page's width give or take a rounding error, which fpdf
        # refuses when it is above (a 20,000-row accounting did: bench/reports.py).
        width=min(sum(widths), pdf.epw),
        align="LEFT",
        headings_style=HEAD,
        line_height=4,
        text_align="LEFT",
        padding=CELL_PADDING,
    ) as table:
        for line in texts:
            row = table.row()
            for text in line:
                row.cell(text)


def column_widths(pdf: FPDF, texts: list[list[str]], available: float) -> list[float]:
    """Widths (mm) for the columns of `texts` (the heading line first) in the current font:
    each at least its longest word (so nothing breaks inside a word), the rest of the page
    shared in proportion to how much more each column's longest text would take."""
    n = len(texts[0])
    word = [0.0] * n
    whole = [0.0] * n
    family, size = pdf.font_family, pdf.font_size_pt
    for i, line in enumerate(texts):
        pdf.set_font(family, "B" if i == 0 else "", size)  # the heading line is bold
        for j, text in enumerate(line):
            for w in text.split():
                # a heading may break between words; a value's words must each fit
                word[j] = max(word[j], pdf.get_string_width(w) + PADDING)
            if i > 0:
                whole[j] = max(whole[j], pdf.get_string_width(text) + PADDING)
    pdf.set_font(family, "", size)
    want = [max(w, h) for w, h in zip(word, whole, strict=True)]
    if sum(want) <= available:
        return want
    spare = available - sum(word)
    if spare <= 0:  # too many columns for the page: shrink all alike
        return [w * available / sum(word) for w in word]
    extra = [h - w for w, h in zip(word, want, strict=True)]
    return [w + spare * e / sum(extra) for w, e in zip(word, extra, strict=True)]


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font("DejaVu", "B", 11)
    pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 9)
