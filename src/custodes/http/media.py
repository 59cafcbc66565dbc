"""The media type of each report file format, for the API's downloads and the console's."""

from __future__ import annotations

REPORT_TYPES = {
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".pdf": "application/pdf",
}
