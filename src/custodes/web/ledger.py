"""The ledger's page: its state and latest checkpoint, a receipt by index, checking a pasted
receipt or an uploaded export (nothing stored)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form
from fastapi.responses import HTMLResponse, Response

from custodes.services import ledger
from custodes.web.console import Console, page, router

BACK = "/ledger"

pages = router()


def _ledger(
    c: Console,
    index: int | None = None,
    checked: dict[str, Any] | None = None,
    export: dict[str, Any] | None = None,
) -> Response:
    st = ledger.status(c.ws, c.who)
    note = ledger.public_checkpoint(c.ws).decode() if st["checkpoint_size"] else ""
    receipt = ledger.public_receipt(c.ws, index) if index is not None else None
    return c.render(
        "ledger.html",
        {
            "title": "Ledger",
            "st": st,
            "note": note,
            "index": index,
            "receipt": receipt,
            "checked": checked,
            "export": export,
        },
    )


@pages.get("/ledger", response_class=HTMLResponse)
def ledger_page(c: Annotated[Console, page(BACK)], index: int | None = None) -> Response:
    return _ledger(c, index=index)


@pages.post("/ledger/check", response_class=HTMLResponse)
def check_receipt(
    receipt: Annotated[str, Form(max_length=1 << 16)], c: Annotated[Console, page(BACK)]
) -> Response:
    """Check a pasted receipt in this session (nothing stored)."""
    return _ledger(c, checked=ledger.check_receipt(c.ws, c.who, receipt))


@pages.post("/ledger/check-export", response_class=HTMLResponse)
async def check_export(c: Annotated[Console, page(BACK)]) -> Response:
    """Check an uploaded export (zip or tar of its folder) in this session: nothing stored;
    fields `archive` and `csrf`."""
    return await c.with_file(
        "archive", lambda archive: _ledger(c, export=ledger.check_export(c.ws, c.who, archive))
    )
