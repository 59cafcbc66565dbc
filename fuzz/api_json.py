"""The API harness: fuzzed JSON bodies (and path ids) to every /v1 operation that takes a JSON
body, as each role, against a real workspace in-process. A response of 5xx is a crash;
everything else (a result, or a problem document with its code) is an answer.

An input is: one byte choosing the role, one choosing the operation, one choosing how each
path parameter is filled (the submitted request's id, or text taken from the input), then the
body's bytes. The workspace is made once per process (`api_app.served`, about a minute).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from functools import cache
from typing import Any

from fuzz.harnesses import Crash

_stack = ExitStack()  # held open for the process's life (libFuzzer ends it with _exit)


@cache
def _served() -> Any:
    from fuzz.api_app import served

    return _stack.enter_context(served())


@cache
def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, the JSON body's schema) of every operation with a JSON body."""
    spec = _served().client.app.openapi()
    out = []
    for path, ops in sorted(spec["paths"].items()):
        for method, op in sorted(ops.items()):
            content = (op.get("requestBody") or {}).get("content", {})
            if "application/json" in content:
                out.append((method.upper(), path, content["application/json"].get("schema", {})))
    return out


def _fill(path: str, how: int, text: str) -> str:
    from urllib.parse import quote

    s = _served()
    out, rest = [], path
    while "{" in rest:
        head, _, tail = rest.partition("{")
        name, _, rest = tail.partition("}")
        value = s.request_id if how % 2 == 0 or not text else text[:80]
        if name == "job_id" and how % 2 == 0:
            value = "1"
        out.append(head + quote(value, safe=""))
    return "".join(out) + rest


def target(data: bytes) -> None:
    from fuzz.api_app import ROLES

    if len(data) < 3:
        return
    s = _served()
    ops = _operations()
    role = ROLES[data[0] % len(ROLES)]
    method, path, _ = ops[data[1] % len(ops)]
    body = data[3:]
    url = _fill(path, data[2], body[:40].decode("utf-8", "replace"))
    headers = s.headers(role) | {"Content-Type": "application/json"}
    response = s.client.request(method, url, content=body, headers=headers)
    if response.status_code >= 500:
        raise Crash(f"{method} {path} as {role}: HTTP {response.status_code}")


def _example(schema: dict[str, Any], spec: dict[str, Any], depth: int = 0) -> Any:
    """A small value of the body's schema, for a seed (the fuzzer mutates from there)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _example(spec["components"]["schemas"][name], spec, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return _example(schema[key][0], spec, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        return {k: _example(v, spec, depth + 1) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [_example(schema.get("items", {}), spec, depth + 1)] if depth < 4 else []
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if "enum" in schema:
        return schema["enum"][0]
    return "x"


def seeds() -> Iterator[bytes]:
    from fuzz.api_app import ROLES

    spec = _served().client.app.openapi()
    for i, (_, _, schema) in enumerate(_operations()):
        body = json.dumps(_example(schema, spec)).encode()
        for role in (
            ROLES.index("officer"),
            ROLES.index("agency_key"),
            ROLES.index("administrator"),
        ):
            yield bytes([role, i, 0]) + body
