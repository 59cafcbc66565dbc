"""Requests: submission (multipart or inline JSON), paper confirmation, the list, status,
withdrawal, the released response, and the next step."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import Header, Request, Response, status
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from custodes.api import common
from custodes.api import models as m
from custodes.api.common import CHUNK, Paged, accepted
from custodes.errors import InputError
from custodes.http import limits, problems
from custodes.http.deps import WS, JobsDep, Who
from custodes.services import decisions, requests

agency = common.agency()
staff = common.staff()
ROUTERS = (agency, staff)

MAX_PROBLEMS = 50  # a body's validation problems listed in one answer (the total is given)

FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


async def _save(upload: UploadFile, target: Path, sha: Any, limit: int | None = None) -> None:
    limit = limits.MAX_UPLOAD if limit is None else limit
    size = 0
    with open(target, "wb") as fh:
        while chunk := await upload.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise InputError(f"An upload is at most {limit:,} bytes.", code="file_too_large")
            sha.update(chunk)
            fh.write(chunk)


def _items_name(envelope: bytes) -> str:
    """The items file name the envelope gives (a plain file name), to save the upload under."""
    try:
        name = json.loads(envelope).get("items")
    except (ValueError, AttributeError, RecursionError):  # nested past the parser's depth
        raise InputError("envelope: not a JSON object.", code="bad_envelope") from None
    if not isinstance(name, str) or not name or Path(name).name != name or name[0] == ".":
        raise InputError(
            "envelope: 'items' must name the items file (a plain file name).",
            code="bad_envelope",
        )
    return name


def _where(part: Any) -> str:
    """A place in a JSON body, named without quoting what was sent: an index, or a field name
    shaped like one (a key an agency chose that is not, e.g. a number, reads as '…')."""
    text = str(part)
    return text if isinstance(part, int) or FIELD_NAME.fullmatch(text) else "…"


async def _stage(request: Request, folder: Path) -> str:
    """Write the submitted request (multipart envelope + items, or JSON inline) into `folder`
    as a request directory; returns the payload's hash (for the idempotency key)."""
    sha = hashlib.sha256()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length", "")
    # Refused before a byte is read: a body declared larger than two uploads and their framing.
    if (
        declared.isascii()
        and declared.isdigit()
        and int(declared) > 2 * limits.MAX_UPLOAD + (1 << 16)
    ):
        raise InputError(
            f"An upload is at most {limits.MAX_UPLOAD:,} bytes.", code="file_too_large"
        )
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=2, max_fields=2)
        except StarletteHTTPException as exc:  # a malformed body, or more parts than the two
            raise problems.unreadable_body(  # files: the cause's own code
                exc,
                too_many="Send exactly two files: 'envelope' and 'items' (multipart/form-data).",
            ) from None
        envelope, items = form.get("envelope"), form.get("items")
        if not (isinstance(envelope, UploadFile) and isinstance(items, UploadFile)):
            raise InputError(
                "Send two files: 'envelope' (envelope.json) and 'items' (its items file).",
                code="bad_argument",
            )
        # the envelope is read whole to find the items file's name: no larger than intake allows
        await _save(envelope, folder / "envelope.json", sha, requests.MAX_ENVELOPE_BYTES)
        await _save(items, folder / _items_name((folder / "envelope.json").read_bytes()), sha)
    elif kind == "application/json":
        parts, size, limit = [], 0, limits.inline_limit()
        async for chunk in request.stream():  # never more than the limit held in memory
            size += len(chunk)
            if size > limit:
                raise InputError(
                    f"A submission with its items inline is at most {limit:,} bytes (send "
                    "larger ones as files).",
                    code="file_too_large",
                )
            parts.append(chunk)
        body = b"".join(parts)
        sha.update(body)
        try:
            inline = m.InlineRequest.model_validate_json(body)
        except ValidationError as exc:  # every problem, located, never the value sent
            errors = exc.errors(include_input=False)
            unparsed, shaped = "bad_json", "bad_argument"  # not JSON; JSON of another shape
            found = [
                f"{'.'.join(_where(p) for p in e.get('loc', ())) or 'body'}: {e.get('msg')}"
                for e in errors
            ]
            more = f"; and {len(found) - MAX_PROBLEMS} more" if len(found) > MAX_PROBLEMS else ""
            raise InputError(
                "The JSON body must be {'envelope': {...}, 'items': [{...}, ...]}: "
                + "; ".join(found[:MAX_PROBLEMS])
                + more
                + ".",
                code=unparsed if all(e["type"] == "json_invalid" for e in errors) else shaped,
            ) from None
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(inline.items), folder / "items.parquet")
        stored = {**inline.envelope, "items": "items.parquet"}
        (folder / "envelope.json").write_text(json.dumps(stored))
    else:
        raise InputError(
            "Send multipart/form-data (envelope + items files) or application/json.",
            code="unsupported_media_type",
        )
    return sha.hexdigest()


SUBMISSION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["envelope", "items"],
                    "properties": {
                        "envelope": {"type": "string", "format": "binary"},
                        "items": {"type": "string", "format": "binary"},
                    },
                }
            },
            "application/json": {"schema": m.InlineRequest.model_json_schema()},
        },
    }
}


@agency.post(
    "/requests",
    response_model=m.Submission,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": m.Submission,
            "description": "The same content was already received: the first submission, with "
            "`duplicate: true`",
        },
        202: {"model": m.Job, "description": "With `Prefer: respond-async`: the intake's job"},
    },
    openapi_extra=SUBMISSION_BODY,
)
async def submit(
    request: Request,
    response: Response,
    who: Who,
    ws: WS,
    jobs_: JobsDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    prefer: Annotated[str | None, Header(max_length=255)] = None,
    paper_scan_sha256: Annotated[
        str | None, Header(alias="X-Paper-Scan-SHA256", max_length=64)
    ] = None,
) -> Any:
    """Submit a request: multipart (envelope.json + items file) or JSON with the items inline.
    An agency's account submits in its own name. Staff key in only a request received on
    paper, naming its scan's SHA-256 in `X-Paper-Scan-SHA256` (403 `agency_account_required`
    otherwise); a second staff member confirms it (`POST /v1/requests/{id}/paper-confirmation`)
    before it is processed.
    The same content again is recognised (200, `duplicate`). `Idempotency-Key`: the same key
    and payload return the first answer; another payload under the key is 422; a retry while
    the first is running is 409. `Prefer: respond-async` (RFC 7240): answered `202` with the
    intake's job as soon as the upload is on disk (for large uploads); the job's result is
    the submission, or its problem."""
    folder: Path | None = await run_in_threadpool(jobs_.staging)
    assert folder is not None
    try:
        payload = await _stage(request, folder)
        options = {
            "idempotency_key": idempotency_key,
            "payload_sha256": payload,
            "paper_sha256": paper_scan_sha256,
        }
        if prefer and "respond-async" in prefer.lower():
            staged = folder
            job = await run_in_threadpool(
                jobs_.start,
                who,
                "submit",
                None,
                args=(staged,),
                kwargs=options,
                cleanup=functools.partial(shutil.rmtree, staged, ignore_errors=True),
            )
            folder = None  # the job removes it when it has ended
            answer = accepted(job)
            answer.headers["Preference-Applied"] = "respond-async"
            return answer
        result = await run_in_threadpool(requests.submit, ws, who, folder, **options)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    response.headers["Location"] = f"/v1/requests/{result.request_id}"
    if result.duplicate:
        response.status_code = status.HTTP_200_OK
    return result.to_dict()


@staff.post("/requests/{id}/paper-confirmation", response_model=m.Document)
def confirm_paper(id: str, who: Who, ws: WS) -> Any:
    """A second staff member confirms a request keyed in from paper against its scan (never
    the one who keyed it in: 403 `separation_of_duties`); only then is it processed (until
    then `409 paper_unconfirmed`)."""
    return requests.confirm_paper(ws, who, id)


@agency.get("/requests", response_model=list[m.RequestSummary])
def list_requests(who: Who, ws: WS, paged: Paged) -> Any:
    """The requests the caller may see (an agency: only its own), oldest first; `limit` pages
    them (`Link: rel="next"`)."""
    return paged(requests.listing(ws, who), "id")


@agency.get("/requests/{request_id}", response_model=m.Document)
def request_status(request_id: str, who: Who, ws: WS) -> Any:
    """A request's state and every move, with who made it (another agency's: 404)."""
    return requests.status(ws, who, request_id)


@agency.post("/requests/{request_id}/withdraw", response_model=m.Moved)
def withdraw(request_id: str, body: m.Reason, who: Who, ws: WS) -> Any:
    """Withdraw a request, with its reason, before it is released or refused (an agency: only
    its own): nothing of it will be released; the answer names the state it left (`from`)."""
    return requests.withdraw(ws, who, request_id, body.reason)


@agency.get(
    "/requests/{request_id}/response",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def response_json(request_id: str, who: Who, ws: WS) -> Response:
    """The released response (response.json: counts, fields, recipients, the signed
    checkpoint and one row per item); each download is recorded."""
    files = decisions.download(ws, who, request_id)
    return Response(files["response.json"], media_type="application/json")


@agency.get(
    "/requests/{request_id}/response.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def response_csv(request_id: str, who: Who, ws: WS) -> Response:
    """The released response as CSV (the same file as `custodes release --out`)."""
    files = decisions.download(ws, who, request_id)
    return Response(
        files["response.csv"],
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{request_id}.csv"'},
    )


@agency.get("/requests/{request_id}/next", response_model=m.Document)
def next_step(request_id: str, who: Who, ws: WS) -> Any:
    """What comes next, which role takes it, and whether the caller may."""
    return decisions.next_step(ws, who, request_id)
