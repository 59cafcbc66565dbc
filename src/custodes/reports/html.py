"""A report as one self-contained HTML page (Jinja2, values escaped; charts inline as SVG with
a text alternative; nothing fetched from elsewhere)."""

from __future__ import annotations

import functools

import jinja2
from markupsafe import Markup

from custodes.reports.document import (
    Document,
    cell,
    chart_svg,
    figure_label,
    groups,
    parameters_text,
    rows_count,
    us_count,
    us_date,
)


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("custodes.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(
        cell=cell,
        us_count=us_count,
        us_date=us_date,
        groups=groups,
        dict=dict,
        rows_count=rows_count,
        parameters_text=parameters_text,
        figure_label=figure_label,
    )
    return env


def render_html(doc: Document) -> str:
    # The SVG is drawn here by matplotlib from numbers, with no text a user supplied except
    # labels that matplotlib escapes; it is the one piece not escaped again.
    charts = [{"chart": c, "svg": Markup(_strip_prolog(chart_svg(c)))} for c in doc.charts]
    return _env().get_template("report.html").render(doc=doc, charts=charts)


def _strip_prolog(svg: str) -> str:
    return svg[svg.index("<svg") :]
