"""The `/v1` routes. Each one parses, calls one service as the caller, and renders: no rule, no
query and no authorization of its own (the services and their door decide everything)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi import Path as Path_
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from custodes import __version__
from custodes.api import models as m
from custodes.errors import REGISTRY, InputError, NotFound
from custodes.http import limits
from custodes.http.deps import WS, JobsDep, Who
from custodes.http.media import REPORT_TYPES
from custodes.http.problems import MEDIA_TYPE, ProblemDetails
from custodes.services import audit, decisions, jobs, ledger, records, reports, requests, users
from custodes.services import rules as rules_svc
from custodes.services import workspace as ws_svc

CHUNK = 1 << 20
MAX_PROBLEMS = 50  # a body's validation problems listed in one answer (the total is given)
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


PROBLEMS: dict[int | str, dict[str, Any]] = {
    s: {"model": ProblemDetails, "content": {MEDIA_TYPE: {}}} for s in (401, 403, 404, 409, 422)
}

public = APIRouter(prefix="/v1", tags=["public"])
agency = APIRouter(prefix="/v1", tags=["requests"], responses=PROBLEMS)
staff = APIRouter(prefix="/v1", tags=["staff"], responses=PROBLEMS)
oversight = APIRouter(prefix="/v1", tags=["reports"], responses=PROBLEMS)


# --- public: health, problem types, the ledger in tlog-tiles ---------------------------------


@public.get("/health", response_model=m.Health)
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@public.get("/problems/{code}", response_model=ProblemDetails, responses=PROBLEMS)
def problem_type(code: str) -> dict[str, Any]:
    """What a problem `type` means: its code, title and HTTP status."""
    entry = REGISTRY.get(code)
    if entry is None:
        raise NotFound("No such problem type.", code="not_found")
    return {
        "type": f"/v1/problems/{code}",
        "title": entry.title,
        "status": entry.http_status,
        "code": code,
    }


@public.get(
    "/ledger/checkpoint",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **PROBLEMS},
)
def checkpoint(ws: WS) -> Response:
    """The latest signed checkpoint (C2SP signed note) with its witnesses' cosignatures."""
    return Response(
        ledger.public_checkpoint(ws),
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )


@public.get(
    "/ledger/receipts/{index}",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **PROBLEMS},
)
def receipt(index: Annotated[int, Path_(ge=0, le=2**53)], ws: WS) -> Response:
    """A receipt (c2sp.org/tlog-proof@v1) that event `index` is in the log: its salted
    commitment, the inclusion proof and the latest signed checkpoint with cosignatures. Verify
    it with the log's key (`custodes ledger verify FILE --key ...`); the event's body stays with
    whoever holds it."""
    return Response(
        ledger.public_receipt(ws, index),
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )


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
WITNESS_MAX_BODY = ledger.wit.MAX_BODY


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


# --- sessions ---------------------------------------------------------------------------------


@public.post(
    "/sessions",
    response_model=m.Session,
    status_code=status.HTTP_201_CREATED,
    responses={**PROBLEMS, 429: {"model": ProblemDetails, "content": {MEDIA_TYPE: {}}}},
)
def sign_in(body: m.SignIn, request: Request, ws: WS) -> dict[str, Any]:
    """Staff sign in with password (and one-time code); the token is checked on every call.
    Failures are throttled per account and client address (429 with Retry-After);
    X-Forwarded-For counts only from the configured proxy (CUSTODES_TRUSTED_PROXY)."""
    client = request.client.host if request.client else None
    token = ws_svc.login(
        ws,
        body.name,
        body.password,
        totp=body.totp,
        client=client,
        forwarded_for=request.headers.get("x-forwarded-for"),
    )
    return {"token": token, "user": body.name, "expires_in_hours": ws_svc.SESSION_HOURS}


@staff.delete("/sessions/current", status_code=status.HTTP_204_NO_CONTENT)
def sign_out(who: Who, ws: WS, request: Request) -> Response:
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    ws_svc.logout(ws, token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@staff.get("/whoami", response_model=m.WhoAmI)
def whoami(who: Who, ws: WS) -> dict[str, Any]:
    return ws_svc.whoami(ws, who)


# --- requests (agency systems and staff) ------------------------------------------------------


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
    if declared.isdigit() and int(declared) > 2 * limits.MAX_UPLOAD + (1 << 16):
        raise InputError(
            f"An upload is at most {limits.MAX_UPLOAD:,} bytes.", code="file_too_large"
        )
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=2, max_fields=2)
        except StarletteHTTPException:  # a malformed body, or more parts than the two files
            raise InputError(
                "Send exactly two files: 'envelope' and 'items' (multipart/form-data).",
                code="bad_argument",
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
            found = [
                f"{'.'.join(_where(p) for p in e.get('loc', ())) or 'body'}: {e.get('msg')}"
                for e in exc.errors(include_input=False)
            ]
            more = f"; and {len(found) - MAX_PROBLEMS} more" if len(found) > MAX_PROBLEMS else ""
            raise InputError(
                "The JSON body must be {'envelope': {...}, 'items': [{...}, ...]}: "
                + "; ".join(found[:MAX_PROBLEMS])
                + more
                + ".",
                code="bad_argument",
            ) from None
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(inline.items), folder / "items.parquet")
        envelope = {**inline.envelope, "items": "items.parquet"}
        (folder / "envelope.json").write_text(json.dumps(envelope))
    else:
        raise InputError(
            "Send multipart/form-data (envelope + items files) or application/json.",
            code="unsupported_media_type",
        )
    return sha.hexdigest()


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
    openapi_extra={
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
    },
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
                cleanup=lambda: shutil.rmtree(staged, ignore_errors=True),
            )
            folder = None  # the job removes it when it has ended
            accepted = _accepted(job)
            accepted.headers["Preference-Applied"] = "respond-async"
            return accepted
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


# --- lists: the whole list as before, or one page at a time -----------------------------------

Limit = Annotated[
    int | None,
    Query(
        ge=1,
        le=1000,
        description="Page size. With it the answer is one page, and while more follow a "
        '`Link: <…>; rel="next"` header (RFC 8288) gives the next page\'s address; without it, '
        "the whole list (as before pages existed).",
    ),
]
Cursor = Annotated[
    str | None,
    Query(max_length=200, description='Where a page starts: from a `rel="next"` link.'),
]


def _page(
    request: Request,
    response: Response,
    rows: list[dict[str, Any]],
    key: str,
    limit: int | None,
    cursor: str | None,
) -> list[dict[str, Any]]:
    """One page of a list the service returned, after the item the cursor names (the cursor is
    that item's key, base64url: opaque to clients, stable while items are added). Rendering
    only: what the caller may see is the service's list."""
    if cursor is not None:
        keys = [str(r[key]) for r in rows]
        try:
            after = base64.urlsafe_b64decode(cursor.encode() + b"==").decode()
        except (ValueError, UnicodeDecodeError):
            after = None
        if after not in keys:
            raise InputError(
                "The cursor names no item of this list (it is from another list, or altered); "
                "start again without it.",
                code="bad_cursor",
            )
        rows = rows[keys.index(after) + 1 :]
    if limit is None or len(rows) <= limit:
        return rows
    page = rows[:limit]
    mark = base64.urlsafe_b64encode(str(page[-1][key]).encode()).decode().rstrip("=")
    nxt = request.url.include_query_params(cursor=mark, limit=limit)
    response.headers["Link"] = f'<{nxt.path}?{nxt.query}>; rel="next"'
    return page


@agency.get("/requests", response_model=list[m.RequestSummary])
def list_requests(
    request: Request,
    response: Response,
    who: Who,
    ws: WS,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Any:
    """The requests the caller may see (an agency: only its own), oldest first; `limit` pages
    them (`Link: rel="next"`)."""
    return _page(request, response, requests.listing(ws, who), "id", limit, cursor)


@agency.get("/requests/{request_id}", response_model=m.Document)
def request_status(request_id: str, who: Who, ws: WS) -> Any:
    """A request's state and every move, with who made it (another agency's: 404)."""
    return requests.status(ws, who, request_id)


@agency.post("/requests/{request_id}/withdraw", response_model=m.Moved)
def withdraw(request_id: str, body: m.Reason, who: Who, ws: WS) -> Any:
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


@agency.get("/recalls", response_model=list[m.RecallSummary])
def list_recalls(
    request: Request,
    response: Response,
    who: Who,
    ws: WS,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Any:
    """Every recall with its requests, agencies, reason, status (open, overdue, certified),
    return-by date and acknowledgements; an agency sees only the recalls of its requests.
    `limit` pages them (`Link: rel="next"`)."""
    return _page(request, response, decisions.recalls(ws, who), "recall_id", limit, cursor)


@agency.get("/recalls/{recall_id}/notice", response_model=m.Document)
def recall_notice(recall_id: str, who: Who, ws: WS) -> Any:
    """The return-or-destroy notice as issued (an agency: the part about its own requests;
    another agency's recall: 404)."""
    return decisions.recall_notice(ws, who, recall_id)


@agency.get(
    "/recalls/{recall_id}/notice.txt",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def recall_notice_text(recall_id: str, who: Who, ws: WS) -> Response:
    """The same notice as plain text, to print or file."""
    text = decisions.recall_notice(ws, who, recall_id, text=True)
    return Response(
        text,
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="notice-{recall_id}.txt"'},
    )


@agency.post("/recalls/{recall_id}/acknowledgement", response_model=m.Acknowledgement)
def acknowledge_recall(recall_id: str, who: Who, ws: WS) -> Any:
    """The recipient agency acknowledges receipt of the notice (recorded in the ledger once;
    again answers with the first acknowledgement). Destruction is certified separately."""
    return decisions.acknowledge_recall(ws, who, recall_id)


@agency.get("/requests/{request_id}/next", response_model=m.Document)
def next_step(request_id: str, who: Who, ws: WS) -> Any:
    """What comes next, which role takes it, and whether the caller may."""
    return decisions.next_step(ws, who, request_id)


# --- staff: long work as jobs ----------------------------------------------------------------


def _accepted(job: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        m.Job.model_validate(job).model_dump(mode="json"),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/v1/jobs/{job['id']}"},
    )


for _kind, _doc in (
    ("process", "Process a request (rules, matching, decisions) as a job."),
    ("train", "Train the linkage model on the master file and this request, as a job."),
    ("release", "Release an approved request (response + one ledger leaf each), as a job."),
):

    def _start(request_id: str, who: Who, jobs_: JobsDep, kind: str = _kind) -> JSONResponse:
        return _accepted(jobs_.start(who, kind, request_id))

    staff.add_api_route(
        f"/requests/{{request_id}}/{_kind}",
        _start,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=m.Job,
        summary=_doc,
        operation_id=f"start_{_kind}",
    )


@staff.get("/jobs", response_model=list[m.Job])
def list_jobs(
    request: Request,
    response: Response,
    who: Who,
    ws: WS,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Any:
    """The caller's latest jobs (an auditor: everyone's), newest first; `limit` pages them."""
    return _page(request, response, jobs.listing(ws, who), "id", limit, cursor)


@staff.get("/jobs/{job_id}", response_model=m.Job)
def get_job(job_id: str, who: Who, ws: WS) -> Any:
    """A job: `queued`, `running` with progress, `succeeded` with its result, `failed` with a
    problem, or `cancelled`."""
    return jobs.job(ws, who, job_id)


@staff.delete("/jobs/{job_id}", response_model=m.Job)
def cancel_job(job_id: str, who: Who, ws: WS) -> Any:
    """Cancel a queued job, or stop a running one at its next chunk."""
    return jobs.cancel(ws, who, job_id)


# --- staff: decisions ------------------------------------------------------------------------


@staff.get("/requests/{request_id}/outcomes", response_model=m.OutcomesPage)
def outcomes(
    request_id: str,
    who: Who,
    ws: WS,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    check: Annotated[str | None, Query(max_length=128)] = None,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """A page of the per-item outcomes, filterable by outcome and failing check."""
    return decisions.outcomes_page(
        ws, who, request_id, outcome=outcome, check=check, offset=offset, limit=limit
    )


@staff.get("/requests/{request_id}/items/{item_id}", response_model=m.Document)
def explain(request_id: str, item_id: str, who: Who, ws: WS) -> Any:
    """Why one item got its outcome: every check with its citation, and the match evidence."""
    return decisions.explain(ws, who, request_id, item_id)


@staff.get("/requests/{request_id}/review", response_model=list[m.Document])
def review(request_id: str, who: Who, ws: WS) -> Any:
    return decisions.review_list(ws, who, request_id)


@staff.get("/requests/{request_id}/review/groups", response_model=list[m.Document])
def review_groups(request_id: str, who: Who, ws: WS) -> Any:
    """Review items grouped by reason, with what it means and a sample to inspect."""
    return decisions.review_groups(ws, who, request_id)


@staff.post("/requests/{request_id}/review", response_model=m.Resolved)
def resolve(request_id: str, body: m.Resolution, who: Who, ws: WS) -> Any:
    """Resolve items (or a whole group) to withhold, or to disclose naming the record."""
    return decisions.review_resolve(
        ws,
        who,
        request_id,
        body.decision.upper(),
        body.reason,
        items=body.items,
        records=body.records,
        group=body.group,
    )


@staff.post("/requests/{request_id}/prepare", response_model=m.Document)
def prepare(request_id: str, who: Who, ws: WS) -> Any:
    """Prepare the release: records the hash of exactly what will be released."""
    return decisions.prepare(ws, who, request_id)


@staff.post("/requests/{request_id}/approve", response_model=m.Document)
def approve(request_id: str, who: Who, ws: WS) -> Any:
    """Approve a prepared release (a second person: never who prepared or submitted it)."""
    return decisions.approve(ws, who, request_id)


# --- reports and incidents -------------------------------------------------------------------

ReportFormat = Annotated[
    Literal["json", "csv", "html", "pdf"] | None,
    Query(
        description="A file in this format (the bytes whose SHA-256 the ledger records, so "
        "`custodes report verify` checks it); without it, the report as a JSON document."
    ),
]
Year = Annotated[int | None, Query(ge=1900, le=9999)]
REPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, **{t: {} for t in REPORT_TYPES.values()}}}
}


def _report(result: dict[str, Any]) -> Response:
    if "data" not in result:
        return JSONResponse(result["document"], headers={"Cache-Control": "no-store"})
    return Response(
        result["data"],
        media_type=REPORT_TYPES[result["format"]],
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{result["report"]}{result["format"]}"',
            "X-Content-SHA256": result["sha256"],
        },
    )


@oversight.get("/reports/accounting", response_class=Response, responses=REPORT_RESPONSES)
def report_accounting(
    who: Who,
    ws: WS,
    year: Year = None,
    agency: Annotated[str | None, Query(max_length=200)] = None,
    provision: Annotated[str | None, Query(max_length=64)] = None,
    format: ReportFormat = None,
) -> Response:
    """The accounting of disclosures (26 U.S.C. 6103(p)(3)(A)): one row per disclosure."""
    return _report(
        reports.accounting(ws, who, year=year, agency=agency, provision=provision, fmt=format)
    )


@oversight.get("/reports/jct", response_class=Response, responses=REPORT_RESPONSES)
def report_jct(
    who: Who,
    ws: WS,
    year: Year = None,
    office: Annotated[str | None, Query(max_length=200)] = None,
    format: ReportFormat = None,
) -> Response:
    """The year's table for the Joint Committee on Taxation (6103(p)(3)(C)); `office` names the
    issuing office on it."""
    return _report(reports.jct(ws, who, year=year, office=office, fmt=format))


@oversight.post("/reports/person", response_class=Response, responses=REPORT_RESPONSES)
def report_person(
    body: m.PersonAccounting, who: Who, ws: WS, format: ReportFormat = None
) -> Response:
    """One person's accounting (an inspection: purpose and request required, recorded); with
    `privacy_act`, the view the person receives."""
    return _report(
        reports.person(
            ws,
            who,
            body.record_id,
            purpose=body.purpose,
            request=body.request,
            privacy_act=body.privacy_act,
            fmt=format,
        )
    )


@oversight.get(
    "/reports/requests/{request_id}", response_class=Response, responses=REPORT_RESPONSES
)
def report_request(request_id: str, who: Who, ws: WS, format: ReportFormat = None) -> Response:
    """One request's checks, matching, review, stages and actors."""
    return _report(reports.request(ws, who, request_id, fmt=format))


@oversight.get("/reports/recalls", response_class=Response, responses=REPORT_RESPONSES)
def report_recalls(who: Who, ws: WS, format: ReportFormat = None) -> Response:
    """Every recall with its certifications, open and overdue."""
    return _report(reports.recalls(ws, who, fmt=format))


@oversight.get("/reports/safeguards", response_class=Response, responses=REPORT_RESPONSES)
def report_safeguards(who: Who, ws: WS, year: Year = None, format: ReportFormat = None) -> Response:
    """The safeguards evidence for a year (annex to the Safeguard Security Report)."""
    return _report(reports.safeguards(ws, who, year=year, fmt=format))


@oversight.get("/incidents", response_model=list[m.Incident])
def list_incidents(
    request: Request,
    response: Response,
    who: Who,
    ws: WS,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Any:
    """Every incident with its status (open, overdue, reported, closed); `limit` pages them."""
    return _page(request, response, reports.incidents(ws, who), "incident_id", limit, cursor)


@oversight.post("/incidents", response_model=m.Incident, status_code=status.HTTP_201_CREATED)
def open_incident(body: m.IncidentOpening, who: Who, ws: WS) -> Any:
    """Open an incident: its report is due within 24 hours."""
    return reports.incident_open(
        ws, who, kind=body.kind, summary=body.summary, request_id=body.request_id
    )


@oversight.post("/incidents/{incident_id}/reported", response_model=m.Incident)
def incident_reported(incident_id: str, who: Who, ws: WS) -> Any:
    """Record that the incident's report was sent."""
    return reports.incident_reported(ws, who, incident_id)


@oversight.post("/incidents/{incident_id}/close", response_model=m.Incident)
def close_incident(incident_id: str, body: m.IncidentClosing, who: Who, ws: WS) -> Any:
    """Close a reported incident with its finding."""
    return reports.incident_close(ws, who, incident_id, finding=body.finding)


@oversight.get(
    "/incidents/{incident_id}/draft", response_class=Response, responses=REPORT_RESPONSES
)
def incident_draft(incident_id: str, who: Who, ws: WS, format: ReportFormat = None) -> Response:
    """The draft report to the inspector general and the Office of Safeguards."""
    return _report(reports.incident_draft(ws, who, incident_id, fmt=format))


# --- staff: recalls, inspection, rules and registries, users, audit ---------------------------


@staff.post("/requests/{request_id}/recall", response_model=m.Document)
def recall(request_id: str, body: m.Recall, who: Who, ws: WS) -> Any:
    """Recall every disclosure of a released request, or only the `items` given (item ids);
    the notice is kept in the store and offered to the agency (`/v1/recalls/{id}/notice`)."""
    return decisions.recall(ws, who, reason=body.reason, request_id=request_id, items=body.items)


@staff.post("/recalls/{recall_id}/certify", response_model=m.Document)
def certify(recall_id: str, body: m.Certification, who: Who, ws: WS) -> Any:
    """Record the recipient's certification that the recalled information was destroyed."""
    return decisions.certify(
        ws, who, recall_id, certified_by=body.certified_by, certified_on=body.certified_on
    )


ARCHIVE_TYPES = (
    "application/zip",
    "application/x-zip-compressed",
    "application/gzip",
    "application/x-gzip",
    "application/x-tar",
    "application/octet-stream",
)
ARCHIVE_BODY = {
    "requestBody": {
        "required": True,
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in ARCHIVE_TYPES},
    }
}


async def _raw_body(
    request: Request, kinds: tuple[str, ...], limit: int = limits.MAX_UPLOAD
) -> IO[bytes]:
    """The request body as a file (spooled to disk past 8 MiB, never more than `limit`),
    refused unless its content type is one of `kinds`."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in kinds:
        raise InputError(
            f"Send the file as one of: {', '.join(kinds)}.", code="unsupported_media_type"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InputError(f"An upload is at most {limit:,} bytes.", code="file_too_large")
    fh = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - returned to caller
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            fh.close()
            raise InputError(f"An upload is at most {limit:,} bytes.", code="file_too_large")
        fh.write(chunk)
    fh.seek(0)
    return fh


@staff.post("/ledger/verify", response_model=m.Verification, openapi_extra=ARCHIVE_BODY)
async def verify_export(request: Request, who: Who, ws: WS) -> Any:
    """Check a ledger export (`custodes ledger export`, sent as a zip or tar archive of its
    folder) against this log's key and the live log. Nothing is stored."""
    with await _raw_body(request, ARCHIVE_TYPES) as fh:
        return await run_in_threadpool(ledger.check_export, ws, who, fh)


@staff.post("/records/{record_id}/sensitive", response_model=m.Document)
def flag_sensitive(record_id: str, body: m.Reason, who: Who, ws: WS) -> Any:
    """Mark a record sensitive (its every inspection is then flagged for the auditors)."""
    return records.flag_sensitive(ws, who, record_id, body.reason)


@staff.get("/records/summary", response_model=m.Document)
def records_summary(who: Who, ws: WS) -> Any:
    """Counts that describe the master file without revealing anyone in it."""
    return records.summary(ws, who)


@staff.post("/ledger/checkpoint", response_model=m.Document)
def sign_checkpoint(who: Who, ws: WS) -> Any:
    """Sign a checkpoint of the ledger as it stands (only if it extends the last one)."""
    return ledger.checkpoint(ws, who)


@staff.post("/records/inspect", response_model=m.Document)
def inspect(body: m.Inspection, who: Who, ws: WS) -> Any:
    """One taxpayer record, for a stated purpose, when it is a candidate of the open request
    named; every inspection, shown or refused, is recorded."""
    return records.show(ws, who, body.record_id, purpose=body.purpose, request_id=body.request_id)


@staff.get("/rules/changes", response_model=list[m.Document])
def rule_changes(who: Who, ws: WS) -> Any:
    """Rule-set changes proposed and approved, by hash."""
    return rules_svc.changes(ws, who)


@staff.post(
    "/rules/changes",
    response_model=m.Document,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=ARCHIVE_BODY,
)
async def propose_rules(request: Request, who: Who, ws: WS) -> Any:
    """Propose a rule set: its folder as a zip or tar archive. Linted and kept by its hash;
    nothing changes until a second rule steward approves it."""
    with await _raw_body(request, ARCHIVE_TYPES) as fh:
        return await run_in_threadpool(rules_svc.propose_archive, ws, who, fh)


@staff.post("/rules/changes/{sha256}/approve", response_model=m.Document)
def approve_rules(sha256: str, who: Who, ws: WS) -> Any:
    """A second rule steward approves a proposed rule set by its hash."""
    return rules_svc.approve(ws, who, sha256)


@staff.get("/registries/{table}", response_model=list[m.Document])
def registry(table: Literal["agencies", "officials", "agreements"], who: Who, ws: WS) -> Any:
    """One registry's rows."""
    return rules_svc.registry(ws, who, table)


@staff.post("/registries/agencies", response_model=m.Document, status_code=status.HTTP_202_ACCEPTED)
def add_agency(body: m.NewAgency, who: Who, ws: WS) -> Any:
    """Propose a recipient agency with its safeguards status, or a change to the status of one
    already registered: `202` with `pending: true` and the `change` id; it takes effect when a
    second administrator confirms that change (`POST /v1/changes/{id}/confirm`)."""
    return rules_svc.add_agency(
        ws,
        who,
        body.name,
        safeguards_current=body.safeguards_current,
        open_findings=body.open_findings,
    )


@staff.post(
    "/registries/officials", response_model=m.Document, status_code=status.HTTP_202_ACCEPTED
)
def add_official(body: m.NewOfficial, who: Who, ws: WS) -> Any:
    """Propose an official who may sign requests for an agency, in a role, for a period
    (`202`, `pending`, the `change` id: in force once a second administrator confirms it)."""
    return rules_svc.add_official(ws, who, **body.model_dump())


YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/plain")


@staff.post(
    "/registries/agreements",
    response_model=m.Document,
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "string"}} for t in YAML_TYPES},
        }
    },
)
async def add_agreement(request: Request, who: Who, ws: WS) -> Any:
    """Propose an agreement (its YAML text): it may only add requirements to a provision
    (`202`, `pending`, the `change` id: in force once a second administrator confirms it)."""
    with await _raw_body(request, YAML_TYPES, limit=rules_svc.MAX_AGREEMENT) as fh:
        return await run_in_threadpool(
            rules_svc.add_agreement_text, ws, who, fh.read(rules_svc.MAX_AGREEMENT + 1)
        )


@staff.get("/users", response_model=list[m.Document])
def list_users(who: Who, ws: WS) -> Any:
    """Users, their status, and every grant with its legal basis, last day and confirmation."""
    return users.listing(ws, who)


@staff.post("/users", response_model=m.Document, status_code=status.HTTP_201_CREATED)
def add_user(body: m.NewUser, who: Who, ws: WS) -> Any:
    """Add a staff member; the answer carries their one-time enrolment code (shown once).
    A privileged role counts once a second administrator confirms it."""
    return users.add(
        ws,
        who,
        body.name,
        [body.role],
        basis=body.basis,
        last_day=body.last_day,
        agency=body.agency,
    )


@staff.post("/users/{name}/grants", response_model=m.Document, status_code=201)
def grant(name: str, body: m.NewGrant, who: Who, ws: WS) -> Any:
    """Grant a further role with its legal basis (a privileged role counts once a second
    administrator confirms it; roles that separation of duties keeps apart are refused)."""
    return users.grant(ws, who, name, body.role, basis=body.basis, last_day=body.last_day)


@staff.post("/users/{name}/keys", response_model=m.Document, status_code=201)
def new_key(name: str, body: m.NewKey, who: Who, ws: WS) -> Any:
    """An API key for an agency account: shown once, in force once a second administrator
    confirms it (`POST /v1/users/{name}/confirm`)."""
    return users.key(ws, who, name, days=body.days)


@staff.get("/policy", response_model=list[m.Document])
def policy(who: Who, ws: WS) -> Any:
    """The access policy in force and any change waiting for a second administrator."""
    return users.policy(ws, who)


@staff.post("/policy/{key}", response_model=m.Document)
def propose_policy(key: str, body: m.PolicyChange, who: Who, ws: WS) -> Any:
    """Propose a policy value (e.g. `totp_roles`); a second administrator confirms."""
    return users.propose_policy(ws, who, key, body.value)


@staff.post("/policy/{key}/confirm", response_model=m.Document)
def confirm_policy(key: str, who: Who, ws: WS) -> Any:
    """A second administrator puts the proposed value in force."""
    return users.confirm_policy(ws, who, key)


@staff.post("/users/{name}/code", response_model=m.Document)
def new_code(name: str, who: Who, ws: WS) -> Any:
    """Reset the user's credentials: their sessions end now; the answer carries the first
    half of a new enrolment code (shown once) and the id of the change whose confirmation, by
    a second administrator, issues the second half."""
    return users.reset(ws, who, name)


@staff.post("/users/{name}/confirm", response_model=m.Document)
def confirm_user(name: str, who: Who, ws: WS) -> Any:
    """A second administrator confirms the one change pending for this user (409
    `ambiguous_change`, listing them, when there are several: confirm one by its id)."""
    return users.confirm(ws, who, name)


@staff.get("/changes", response_model=list[m.Document])
def list_changes(who: Who, ws: WS) -> Any:
    """Changes waiting for a second administrator: id (the hash a confirmation names), kind,
    what it changes, who proposed it and when."""
    return users.pending_changes(ws, who)


@staff.post("/changes/{id}/confirm", response_model=m.Document)
def confirm_change(id: str, who: Who, ws: WS) -> Any:
    """A second administrator confirms one change by its id; for a new user or a credential
    reset, the answer carries the second half of the enrolment code (shown once)."""
    return users.confirm_change(ws, who, id)


@staff.post("/users/{name}/suspend", response_model=m.Document)
def suspend_user(name: str, body: m.Reason, who: Who, ws: WS) -> Any:
    """Suspend now: sessions and keys end in the same transaction."""
    return users.suspend(ws, who, name, body.reason)


@staff.post("/users/{name}/reinstate", response_model=m.Document)
def reinstate_user(name: str, who: Who, ws: WS) -> Any:
    """Reinstate (takes two administrators)."""
    return users.reinstate(ws, who, name)


@staff.get("/audit/inspections", response_model=m.Document)
def audit_inspections(who: Who, ws: WS) -> Any:
    """Unlinked and sensitive inspections, spikes, actions by suspended users, overdue
    incidents."""
    return audit.inspections(ws, who)
