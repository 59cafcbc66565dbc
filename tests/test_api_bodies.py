"""A body the server cannot parse is refused with its cause's own code, as RFC 9457 problem
details, never quoting what was sent: Starlette and FastAPI say only "400" (and, in a message,
why); `custodes.http.problems.unreadable_body` tells the causes apart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from custodes.app import create_app
from custodes.http import limits
from custodes.workspace import Workspace

SECRET = "123-45-6789 JOHN Q PUBLIC"
FORM = "application/x-www-form-urlencoded"
JSON = {"content-type": "application/json"}


@pytest.fixture
def client(workspace: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(workspace.home), base_url="https://testserver") as c:
        yield c


def _problem(r: Any, code: str) -> dict[str, Any]:
    """A 422 problem with `code`, which quotes nothing of the body sent."""
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["code"] == code and body["type"] == f"/v1/problems/{code}", body
    assert body["title"] and body["detail"] and body["status"] == 422
    assert SECRET not in r.text and "JOHN" not in r.text
    return body


def _multipart(*parts: bytes) -> dict[str, Any]:
    body = b"".join(b"--x\r\n" + p + b"\r\n" for p in parts) + b"--x--\r\n"
    return {"content": body, "headers": {"content-type": "multipart/form-data; boundary=x"}}


def _field(name: str, value: str = SECRET) -> bytes:
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()


def test_a_json_body_that_is_not_json_is_bad_json(client: TestClient) -> None:
    r = client.post("/v1/sessions", content=f'{{"name": "{SECRET}", '.encode(), headers=JSON)
    where = _problem(r, "bad_json")["problems"]
    assert where and all(p["location"].startswith("body") for p in where)


def test_a_json_body_nested_too_deep_to_parse_is_bad_json(client: TestClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    _problem(client.post("/v1/sessions", content=deep, headers=JSON), "bad_json")


def test_a_json_body_not_utf8_is_bad_encoding(client: TestClient) -> None:
    body = f'{{"name": "{SECRET}\udcff"}}'.encode("utf-8", "surrogateescape")
    _problem(client.post("/v1/sessions", content=body, headers=JSON), "bad_encoding")


@pytest.mark.parametrize(
    "body",
    [
        {"content": SECRET.encode(), "headers": {"content-type": "multipart/form-data"}},
        _multipart(f"Content-Disposition: form-data\r\n\r\n{SECRET}".encode()),
        _multipart(SECRET.encode() + b"\r\n\r\nv"),
        {
            "content": SECRET.encode() + b"--x\r\n",
            "headers": {"content-type": "multipart/form-data; boundary=x"},
        },
    ],
    ids=["no boundary", "a part without a name", "a header line not a header", "no boundary first"],
)
def test_a_multipart_body_that_is_not_one_is_bad_multipart(
    client: TestClient, body: dict[str, Any]
) -> None:
    _problem(client.post("/sign-in", **body), "bad_multipart")


def test_more_form_fields_than_the_parser_takes_is_too_many_parts(client: TestClient) -> None:
    fields = "&".join(f"f{i}={SECRET}" for i in range(1001)).encode()
    r = client.post("/sign-in", content=fields, headers={"content-type": FORM})
    _problem(r, "too_many_parts")
    parts = [_field(f"f{i}") for i in range(1001)]
    _problem(client.post("/sign-in", **_multipart(*parts)), "too_many_parts")


def test_more_files_than_the_parser_takes_is_too_many_parts(client: TestClient) -> None:
    files = [
        f'Content-Disposition: form-data; name="f{i}"; filename="{i}.txt"\r\n\r\n{SECRET}'.encode()
        for i in range(1001)
    ]
    _problem(client.post("/sign-in", **_multipart(*files)), "too_many_parts")


def test_a_form_field_longer_than_the_parser_reads_is_oversize_field(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starlette reads a form's field up to 1 MiB; the body limit (1 MiB) usually refuses
    such a body first, so it is raised here to let the field reach the parser."""
    monkeypatch.setattr(limits, "MAX_BODY", 4 << 20)
    long = "name=" + SECRET + "x" * (1 << 20)
    r = client.post("/sign-in", content=long.encode(), headers={"content-type": FORM})
    _problem(r, "oversize_field")
    r = client.post("/sign-in", **_multipart(_field("name", SECRET + "x" * (1 << 20))))
    _problem(r, "oversize_field")
