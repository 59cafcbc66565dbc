"""No SQL text built from a value that did not pass through the quoting helper (store/sql.py
promises this test): a walk of src/ over every f-string, `str.format`, `%` and `+` whose literal
part reads as SQL, failing on an interpolated value that is not one of

- a call of a store/sql.py helper (`ident`, `literal`, `path`, `parquet`; imported under any
  alias), or `int(...)`/`float(...)` (a number cannot carry SQL);
- a literal, or a module constant (an UPPER_CASE name: SQL written in the source);
- `", ".join(x)` of the above, or of a generator yielding the above;

unless its function is in ALLOWED below, with the reason its values are the code's own (column
names from the code's tables, thresholds read as numbers, fragments built by the same rule).
A new function that builds SQL from anything else fails here: quote with store/sql.py or bind
a parameter."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import custodes

SRC = Path(custodes.__file__).parent
HELPERS_MODULE = "custodes.store.sql"
HELPERS = {
    n.name
    for n in ast.parse((SRC / "store" / "sql.py").read_text()).body
    if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
}
# Upper-case keywords only: a sentence ("read from the file") is not SQL.
SQL = re.compile(
    r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE|DROP|ALTER|FROM|WHERE|JOIN|VALUES|COPY|"
    r"ATTACH|PRAGMA|ORDER BY|GROUP BY|CASE WHEN|COALESCE|CAST)\b"
)
CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")

# (file under src/custodes, function) -> why what it interpolates is the code's own.
ALLOWED: dict[tuple[str, str], str] = {
    ("records/files.py", "text_source"): "the Parquet file's own column names quoted with "
    "ident(), after the required/optional check",
    ("decisions/outcomes.py", "decide"): "fragments built in the function from check ids and "
    "field names quoted with ident()/literal()",
    ("decisions/effective.py", "_effective"): "fragments built in the function with "
    "ident()/literal(); filters are bound parameters",
    ("decisions/effective.py", "_filters"): "outcomes quoted with literal(); the other filters "
    "are bound parameters",
    ("decisions/outcomes.py", "step_items"): "the items file's own column names quoted with "
    "ident()",
    ("decisions/outcomes.py", "step_item_checks"): "check ids quoted with ident(); the checks' SQL "
    "compiled from the rule set (sqlglot)",
    ("decisions/outcomes.py", "step_outcome"): "fragments built by _failing from check ids "
    "quoted with ident()/literal()",
    ("decisions/outcomes.py", "outcomes_sql"): "field names quoted with ident(); their values' "
    "SQL is the module's own (field_values)",
    ("store/steps.py", "*"): "runs the named steps' SQL written in the code (matching/deciding.py, "
    "decisions/outcomes.py); the ordering column is the caller's constant",
    ("decisions/response.py", "_rows"): "fragments built in the function with ident()/literal()",
    ("ledger/log.py", "_fetch"): "tile levels and leaf indexes are ints the log computed",
    ("matching/evaluate.py", "*"): "evaluation on synthetic truth: defect names are the "
    "generator's literals, counts are ints",
    ("matching/link.py", "*"): "the linkage SQL: thresholds are floats of the trained model, "
    "columns are the module's constants, fragments come from its own builders",
    ("matching/deciding.py", "*"): "the deciding steps' SQL: thresholds are floats of the "
    "trained model, fragments come from the module's own builders (soundex, _is_itin)",
    ("matching/tables.py", "*"): "the standardized tables: columns are the module's constants "
    "and standardize.py's own SQL",
    ("matching/backends.py", "*"): "Splink's tables: the model's columns (a constant), the "
    "module's own input names, and the table names Splink made",
    ("matching/standardize.py", "*"): "column names are the module's own standard columns",
    ("records/importer.py", "*"): "column lists are the importer's constants; problem tables "
    "and conditions are its own literals",
    ("requests/format.py", "*"): "the format's own SQL constants",
    ("requests/intake.py", "*"): "check fragments are the module's compiled SQL; counts are ints",
    ("rules/evaluate.py", "*"): "check ids quoted with ident(); the SQL comes from the compiled "
    "rule set (sqlglot)",
    ("store/engine.py", "*"): "table and column names of the code's own SQLAlchemy tables",
    ("synthetic/population.py", "*"): "the generator's own columns and literals",
    ("synthetic/requests.py", "*"): "the generator's own columns and literals",
}


def _aliases(tree: ast.Module) -> set[str]:
    names = set(HELPERS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == HELPERS_MODULE:
            names |= {a.asname or a.name for a in node.names if a.name in HELPERS}
    return names


def _safe(e: ast.expr, helpers: set[str]) -> bool:
    if isinstance(e, ast.Constant):
        return True
    if isinstance(e, ast.Name) and CONSTANT.match(e.id):
        return True
    if isinstance(e, ast.Attribute) and CONSTANT.match(e.attr):
        return True
    if isinstance(e, ast.Call):
        f = e.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name in helpers or name in ("int", "float"):
            return True
        if name == "join" and len(e.args) == 1 and isinstance(f, ast.Attribute):
            arg = e.args[0]
            if isinstance(arg, ast.GeneratorExp | ast.ListComp):
                return _safe(arg.elt, helpers)
            return _safe(arg, helpers)
    return False


def _built(node: ast.AST) -> tuple[str, list[ast.expr]] | None:
    """(the literal text, the interpolated values) of a string built by the source."""
    if isinstance(node, ast.JoinedStr):
        text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        return text, [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
        and isinstance(node.func.value.value, str)
    ):
        return node.func.value.value, [*node.args, *(k.value for k in node.keywords)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        sides = (node.left, node.right)
        text = " ".join(
            s.value for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)
        )
        return (text, [s for s in sides if not isinstance(s, ast.Constant)]) if text else None
    return None


def _owner(functions: list[ast.FunctionDef | ast.AsyncFunctionDef], line: int) -> str:
    """The innermost function holding `line`."""
    inner = [f for f in functions if f.lineno <= line <= (f.end_lineno or f.lineno)]
    return max(inner, key=lambda f: f.lineno).name if inner else "<module>"


def offenders() -> list[str]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if "migrations" in path.parts or rel == "store/sql.py":
            continue
        tree = ast.parse(path.read_text())
        helpers = _aliases(tree)
        functions = [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]

        for node in ast.walk(tree):
            built = _built(node)
            if built is None or not SQL.search(built[0]):
                continue
            unsafe = [ast.unparse(v) for v in built[1] if not _safe(v, helpers)]
            fn = _owner(functions, node.lineno)  # type: ignore[attr-defined]
            if unsafe and (rel, fn) not in ALLOWED and (rel, "*") not in ALLOWED:
                out.append(f"{rel}:{node.lineno} in {fn}: {', '.join(unsafe)}")  # type: ignore[attr-defined]
    return out


def test_sql_is_built_only_from_quoted_values() -> None:
    found = offenders()
    assert not found, "SQL built from unquoted values:\n" + "\n".join(found)


def test_the_scan_catches_an_interpolated_value(tmp_path: Path) -> None:
    """The walk itself: an f-string, a format and a concatenation of SQL with a plain name are
    caught; the helpers, numbers and constants are not."""
    code = (
        "from custodes.store.sql import ident as q\n"
        "def f(name, n):\n"
        "    a = f'SELECT * FROM t WHERE c = {name}'\n"
        "    b = 'SELECT {} FROM t'.format(name)\n"
        "    c = 'DELETE FROM t WHERE x = ' + name\n"
        "    ok = f'SELECT {q(name)} FROM t LIMIT {int(n)} -- {MAX}'\n"
        "    ok2 = f'SELECT {\", \".join(q(c) for c in name)} FROM t'\n"
    )
    tree = ast.parse(code)
    helpers = _aliases(tree)
    caught = []
    for node in ast.walk(tree):
        built = _built(node)
        if built and SQL.search(built[0]):
            caught.append(all(_safe(v, helpers) for v in built[1]))
    assert caught == [False, False, False, True, True]
