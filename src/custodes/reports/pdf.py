"""A report as a PDF for filing (fpdf2: pure Python, no system libraries; the DejaVu font that
matplotlib ships covers any name an agency may have; charts as images with their text
alternative)."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.fonts import FontFace

from custodes.reports.document import Document, cell, chart_png, us_count, us_date

_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def render_pdf(doc: Document) -> bytes:
    pdf = FPDF(orientation="L", unit="mm", format="Letter")
    pdf.set_title(doc.title)
    pdf.set_lang("en-US")
    pdf.set_creator("custodes")
    pdf.set_creation_date(dt.datetime.fromisoformat(doc.generated_at))
    pdf.add_font("DejaVu", "", str(_FONTS / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(_FONTS / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(True, margin=12)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 14)
    pdf.multi_cell(0, 7, doc.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 9)
    params = "  ".join(
        f"{k.replace('_', ' ')}: {cell(v, k)}." for k, v in doc.parameters.items() if v is not None
    )
    pdf.multi_cell(
        0,
        5,
        f"Generated {us_date(doc.generated_at)} from the ledger's first "
        f"{us_count(doc.ledger_size)} events. {params}",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    if doc.figures:
        _heading(pdf, "Key figures")
        for k, v in doc.figures.items():
            pdf.multi_cell(
                0,
                5,
                f"{k.replace('_', ' ').capitalize()}: {cell(v)}",
                new_x="LMARGIN",
                new_y="NEXT",
            )
    for c in doc.charts:
        pdf.ln(3)
        pdf.image(io.BytesIO(chart_png(c)), w=170, alt_text=f"{c.title}. {c.alt}")
        pdf.set_font("DejaVu", "", 8)
        pdf.multi_cell(0, 4, f"{c.title}. {c.alt}", new_x="LMARGIN", new_y="NEXT")
    for t in doc.tables:
        _heading(pdf, t.title)
        pdf.set_font("DejaVu", "", 7 if len(t.columns) > 8 else 8)
        rows = t.rows + ([t.total] if t.total else [])
        with pdf.table(
            headings_style=FontFace(emphasis="BOLD", fill_color=(240, 240, 240)),
            line_height=4,
            text_align="LEFT",
        ) as table:
            head = table.row()
            for _, label in t.columns:
                head.cell(label)
            for r in rows:
                row = table.row()
                for k, _ in t.columns:
                    row.cell(cell(r.get(k), k))
    if doc.notes:
        _heading(pdf, "Notes")
        for i, n in enumerate(doc.notes, start=1):
            pdf.multi_cell(0, 5, f"{i}. {n}", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font("DejaVu", "B", 11)
    pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 9)
