"""The ledger over HTTP: its tlog-tiles endpoints and receipts (open to anyone), the witness
(C2SP tlog-witness, when this server runs one), and, for staff, checking an export and signing
a checkpoint."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as Path_
from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from custodes.api import common
from custodes.api import models as m
from custodes.api.common import ARCHIVE_BODY, ARCHIVE_TYPES, PROBLEMS, raw_body
from custodes.errors import NotFound
from custodes.http.deps import WS, Who
from custodes.services import ledger

public = common.public()
staff = common.staff()
ROUTERS = (public, staff)


TEXT = {200: {"content": {"text/plain": {}}}, **PROBLEMS}


def _text(data: bytes | str) -> Response:
    """A signed note or a receipt: plain text, revalidated on every use."""
    return Response(
        data, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )


@public.get("/ledger/checkpoint", response_class=Response, responses=TEXT)
def checkpoint(ws: WS) -> Response:
    """The latest signed checkpoint (C2SP signed note) with its witnesses' cosignatures."""
    return _text(ledger.public_checkpoint(ws))


@public.get("/ledger/receipts/{index}", response_class=Response, responses=TEXT)
def receipt(index: Annotated[int, Path_(ge=0, le=2**53)], ws: WS) -> Response:
    """A receipt (c2sp.org/tlog-proof@v1) that event `index` is in the log: its salted
    commitment, the inclusion proof and the latest signed checkpoint with cosignatures. Verify
    it with the log's key (`custodes ledger verify FILE --key ...`); the event's body stays with
    whoever holds it."""
    return _text(ledger.public_receipt(ws, index))


@public.get(
    "/ledger/tile/{path:path}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **PROBLEMS},
)
def tile(path: str, ws: WS) -> Response:
    """A tlog-tiles hash tile (`tile/L/N[.p/W]`) or entry bundle (`tile/entries/N[.p/W]`);
    full tiles never change and are cached for a year."""
    data, full = ledger.public_tile(ws, path)
    cache = "public, max-age=31536000, immutable" if full else "no-cache"
    return Response(data, media_type="application/octet-stream", headers={"Cache-Control": cache})


WITNESS_TEXT = {"text/plain": {"schema": {"type": "string"}}}


WITNESS_MAX_BODY = ledger.WITNESS_MAX_BODY


@public.post(
    "/witness/add-checkpoint",
    response_class=Response,
    responses={
        200: {"description": "The witness's cosignature line(s)", "content": WITNESS_TEXT},
        400: {"description": "Malformed submission", "content": WITNESS_TEXT},
        403: {"description": "Not signed by a key trusted for the log", "content": WITNESS_TEXT},
        404: {"description": "Unknown log origin, or this server is not a witness"},
        409: {
            "description": "The old size is not the size the witness knows (its size follows)",
            "content": {"text/x.tlog.size": {"schema": {"type": "string"}}},
        },
        413: {"description": "Body too large"},
        422: {"description": "The consistency proof fails", "content": WITNESS_TEXT},
    },
    openapi_extra={"requestBody": {"required": True, "content": WITNESS_TEXT}},
)
async def add_checkpoint(request: Request) -> Response:
    """C2SP tlog-witness: cosign a log's checkpoint only when it is proved consistent with the
    last one this witness cosigned (`old <size>`, the proof lines, a blank line, the signed
    checkpoint). Served when `custodes serve --witness-key` configures a witness; otherwise
    404. Answers are the protocol's own (plain text), not problem details."""
    witness = request.app.state.witness
    if witness is None:
        raise NotFound("This server does not run a witness.", code="not_found")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > WITNESS_MAX_BODY:
        return Response("body too large\n", status_code=413, media_type="text/plain")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > WITNESS_MAX_BODY:
            return Response("body too large\n", status_code=413, media_type="text/plain")
    answer = await run_in_threadpool(witness.add_checkpoint, body)
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


@staff.post("/ledger/verify", response_model=m.Verification, openapi_extra=ARCHIVE_BODY)
async def verify_export(request: Request, who: Who, ws: WS) -> Any:
    """Check a ledger export (`custodes ledger export`, sent as a zip or tar archive of its
    folder) against this log's key and the live log. Nothing is stored."""
    with await raw_body(request, ARCHIVE_TYPES) as fh:
        return await run_in_threadpool(ledger.check_export, ws, who, fh)


@staff.post("/ledger/checkpoint", response_model=m.Document)
def sign_checkpoint(who: Who, ws: WS) -> Any:
    """Sign a checkpoint of the ledger as it stands (only if it extends the last one)."""
    return ledger.checkpoint(ws, who)
