"""The rooms and their doors: no import cycle anywhere in src/, and the import directions
between rooms pinned to what docs/architecture.md draws."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import custodes

SRC = Path(custodes.__file__).parent

# room -> the rooms it may import. Everything not listed here may not be imported.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    # The one table of plain-language labels for codes: imported by the door and the faces.
    "labels": set(),
    # Named points where a crash test kills the process (CUSTODES_FAILPOINT): below every room.
    "failpoints": set(),
    # The transparency-log formats and protocols of C2SP (trees, notes, tiles, the witness and
    # its HTTP client): nothing of custodes' store, workspace or ledger events, not even settings.
    "tlog": {"errors"},
    "store": {"errors", "failpoints"},
    "workspace": {"errors", "store"},
    "ledger": {"errors", "failpoints", "store", "tlog", "workspace"},
    # The four mechanisms know nothing of each other; each writes its events to the ledger.
    "records": {"errors", "ledger", "store", "workspace"},
    "access": {"errors", "labels", "ledger", "store", "workspace"},
    "matching": {"errors", "ledger", "records", "store", "workspace"},
    "rules": {"errors", "ledger", "records", "store", "workspace"},
    "requests": {"errors", "ledger", "records", "store", "workspace"},
    "synthetic": {
        "access",
        "errors",
        "ledger",
        "records",
        "requests",
        "rules",
        "store",
        "workspace",
    },
    "decisions": {
        "access",
        "errors",
        "ledger",
        "matching",
        "records",
        "requests",
        "rules",
        "store",
        "workspace",
    },
    "reports": {
        "access",
        "decisions",
        "errors",
        "ledger",
        "records",
        "requests",
        "rules",
        "store",
        "tlog",
        "workspace",
    },
    "services": {
        "access",
        "decisions",
        "errors",
        "ledger",
        "matching",
        "records",
        "reports",
        "requests",
        "rules",
        "store",
        "synthetic",
        "tlog",
        "workspace",
    },
    # Faces: only the services and the errors (and the package's version).
    # `custodes serve` starts the HTTP face (by name, under uvicorn) and imports nothing of it.
    "cli": {"custodes", "errors", "labels", "services"},
    # What both HTTP faces stand on (problems, admission, limits, headers, dependencies).
    "http": {"errors", "services"},
    "api": {"custodes", "errors", "http", "services"},
    "web": {"custodes", "errors", "http", "labels", "services"},
    # The application `custodes serve` runs: the two HTTP faces put together.
    "app": {"api", "web"},
    "demo": {"access", "services", "synthetic", "workspace"},
    "__main__": {"cli"},
    # The one table of CUSTODES_* settings: read by every room (below), imports the errors only.
    "settings": {"errors"},
}
for _room in ALLOWED:
    if _room not in ("errors", "labels", "settings", "tlog"):
        ALLOWED[_room].add("settings")


def modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        if "migrations" in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def imports() -> dict[str, set[str]]:
    """Module -> the custodes modules it imports (anywhere in it, functions included).
    `from pkg import sub` is an import of the submodule when `sub` is one."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                    for a in node.names
                ]
            else:
                continue
            for n in names:
                if n.startswith("custodes"):
                    t = resolve(n)
                    if t and t != m:
                        edges[m].add(t)
    return edges


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "custodes"


def test_no_import_cycle_anywhere() -> None:
    edges = imports()
    sys.setrecursionlimit(10_000)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_rooms_import_only_in_the_allowed_directions() -> None:
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in imports().items()
        for t in targets
        if room(m) != room(t) and room(m) != "custodes" and room(t) not in ALLOWED[room(m)]
    )
    assert not wrong, "\n".join(wrong)


def test_no_room_loop() -> None:
    graph: dict[str, set[str]] = {}
    for m, targets in imports().items():
        for t in targets:
            if room(m) != room(t):
                graph.setdefault(room(m), set()).add(room(t))
    for a, outs in graph.items():
        for b in outs:
            assert a not in graph.get(b, set()), f"room loop {a} <-> {b}"


def test_transactions_open_only_through_the_door() -> None:
    """Outside access/, store/ and workspace.py, nothing begins a write transaction on the
    engine: every write goes through CheckedCall.transaction(), which re-checks the caller.
    (bootstrap, sign-in and enrolment, which have no caller yet, live in access/; `init`
    creates the ledger's origin in ledger/keys.py.)"""
    allowed = {"access", "store"}
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if "engine.begin()" in p.read_text()
        and p.relative_to(SRC).parts[0] not in allowed
        and p.name != "workspace.py"
        and p.relative_to(SRC).as_posix() != "ledger/keys.py"
    ]
    assert not offenders, offenders


def directions_table() -> str:
    """The rooms and what each may import, as docs/architecture.md shows them."""
    lines = ["| room | may import |", "|---|---|"]
    for name, allowed in ALLOWED.items():
        shown = ", ".join(f"`{a}`" for a in sorted(allowed)) or "nothing of custodes"
        lines.append(f"| `{name}` | {shown} |")
    return "\n".join(lines) + "\n"


def test_the_docs_draw_the_tested_directions() -> None:
    import docgen

    expected = directions_table()
    assert docgen.section("architecture.md", "rooms") == expected, (
        "docs/architecture.md's table of directions is stale; run `PYTHONPATH=src python "
        f"tests/test_architecture.py`, or paste:\n{expected}"
    )


if __name__ == "__main__":
    import docgen

    docgen.write("architecture.md", "rooms", directions_table())
    print("docs/architecture.md: the table of directions regenerated")
