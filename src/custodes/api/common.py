"""What the `/v1` routers share: the problems every staff route may answer, the four routers' tags,
paging a list, a job's `202 Accepted`, and a raw upload body."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Callable
from typing import IO, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse

from custodes.api import models as m
from custodes.errors import InputError
from custodes.http import limits
from custodes.http.problems import MEDIA_TYPE, ProblemDetails

CHUNK = 1 << 20


PROBLEMS: dict[int | str, dict[str, Any]] = {
    s: {"model": ProblemDetails, "content": {MEDIA_TYPE: {}}} for s in (401, 403, 404, 409, 422)
}


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


def page(
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


def accepted(job: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        m.Job.model_validate(job).model_dump(mode="json"),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/v1/jobs/{job['id']}"},
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


async def raw_body(
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
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
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


Rows = list[dict[str, Any]]


def paging(
    request: Request, response: Response, limit: Limit = None, cursor: Cursor = None
) -> Callable[[Rows, str], Rows]:
    """A list route's paging, as a dependency: its `limit` and `cursor` query parameters, and
    the function that cuts the service's list by them (`page`)."""
    return lambda rows, key: page(request, response, rows, key, limit, cursor)


Paged = Annotated[Callable[[Rows, str], Rows], Depends(paging)]


# The four tags the API has always grouped its operations by; each resource module makes the
# routers it needs (a module may hold an agency's routes and staff's on the same resource).
def public() -> APIRouter:
    """Open routes: no credential, no problems declared beyond their own."""
    return APIRouter(prefix="/v1", tags=["public"])


def agency() -> APIRouter:
    """What an agency's system calls (staff may call them too)."""
    return APIRouter(prefix="/v1", tags=["requests"], responses=PROBLEMS)


def staff() -> APIRouter:
    return APIRouter(prefix="/v1", tags=["staff"], responses=PROBLEMS)


def oversight() -> APIRouter:
    """Reports and incidents."""
    return APIRouter(prefix="/v1", tags=["reports"], responses=PROBLEMS)
