"""SQL conditions compiled for a dialect (DuckDB, Spark), from one definition.

A condition is written once in DuckDB's spelling, with ``{name}`` parameters: the rule set's
item checks (``checks.yaml``) and intake's item checks (``requests.format``). It is parsed into
a sqlglot tree; parameters are bound as literal nodes (a list parameter inside ``IN (...)``
becomes one literal per value), never pasted as text; then the tree is written out for the
target dialect. The few functions that differ between engines are named in one class per
dialect, and a check that uses a function the target engine lacks is refused when it is
compiled (and so by ``custodes rules lint``), not later inside the engine. So is a
regular-expression call whose meaning sqlglot would change on the way: a flag Spark has no
spelling for, a single (not global) replacement, a replacement that refers to groups (the two
engines write references differently).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

import sqlglot
from sqlglot import exp

PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_PREFIX = "__param__"
AUTHORING_DIALECT = "duckdb"


class CompileError(ValueError):
    """A check cannot be compiled (bad SQL, unknown parameter, function missing on the engine)."""


def _full_match_spark(args: list[exp.Expression]) -> exp.Expression:
    value, pattern = args
    if not isinstance(pattern, exp.Literal):
        raise CompileError("regexp_full_match needs a literal pattern on spark")
    # Java's `$` also matches before a final line break; `\z` is the end of the text only.
    return exp.RegexpLike(this=value, expression=exp.Literal.string(f"^(?:{pattern.this})\\z"))


def _date_spark(args: list[exp.Expression]) -> exp.Expression:
    value, fmt = args
    if not (isinstance(fmt, exp.Literal) and fmt.this == "%Y-%m-%d"):
        raise CompileError("try_strptime compiles for spark only with the format '%Y-%m-%d'")
    return exp.Anonymous(this="try_to_date", expressions=[value, exp.Literal.string("yyyy-MM-dd")])


def _replace_spark(node: exp.RegexpReplace) -> exp.Expression:
    # Spark's regexp_replace replaces every match; DuckDB's only with the 'g' flag, and sqlglot
    # drops the flag on the way. Group references are \\1 in RE2 and $1 in Java.
    flags = node.args.get("modifiers")
    replacement = node.args.get("replacement")
    if not (isinstance(flags, exp.Literal) and flags.this == "g"):
        raise CompileError("regexp_replace compiles for spark only with the flag 'g'")
    if not isinstance(replacement, exp.Literal) or any(c in replacement.this for c in "\\$"):
        raise CompileError("regexp_replace compiles for spark only with a plain replacement")
    return node


def _matches_spark(node: exp.RegexpLike) -> exp.Expression:
    if node.args.get("flag") is not None:
        raise CompileError("regexp_matches compiles for spark only without flags")
    return node


class Dialect:
    """An engine: its sqlglot name and its spelling of the non-portable functions custodes'
    checks use. A function the checks use that is not portable and not named here is refused."""

    name = "duckdb"
    functions: ClassVar[dict[str, Callable[[list[exp.Expression]], exp.Expression] | None]] = {
        "regexp_full_match": None,  # None: the engine has it under that name
        "try_strptime": None,
        "strlen": None,
    }

    def rewrite(self, node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.RegexpReplace):
            return self.regexp_replace(node)
        if isinstance(node, exp.RegexpLike):
            return self.regexp_matches(node)
        if isinstance(node, exp.RegexpFullMatch):
            fname, args = "regexp_full_match", [node.this, node.expression]
        elif isinstance(node, exp.Anonymous):
            fname, args = str(node.this).lower(), list(node.expressions)
        else:
            return node
        if fname not in self.functions:
            raise CompileError(f"function {fname}() is not one custodes compiles for {self.name}")
        build = self.functions[fname]
        return node if build is None else build(args)

    def regexp_replace(self, node: exp.RegexpReplace) -> exp.Expression:
        return node

    def regexp_matches(self, node: exp.RegexpLike) -> exp.Expression:
        return node


class Spark(Dialect):
    name = "spark"
    functions: ClassVar[dict[str, Callable[[list[exp.Expression]], exp.Expression] | None]] = {
        "regexp_full_match": _full_match_spark,
        "try_strptime": _date_spark,
        "strlen": lambda args: exp.Anonymous(this="octet_length", expressions=args),
    }

    def regexp_replace(self, node: exp.RegexpReplace) -> exp.Expression:
        return _replace_spark(node)

    def regexp_matches(self, node: exp.RegexpLike) -> exp.Expression:
        return _matches_spark(node)


DIALECTS: dict[str, Dialect] = {"duckdb": Dialect(), "spark": Spark()}


def parameters(template: str) -> set[str]:
    return set(PARAM.findall(template))


def _literal(value: Any) -> exp.Expression:
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


# Compiled checks by template, dialect and the values of the parameters they use: a pure
# function, called for every check of every rule evaluation (~150 a request processed, each a
# sqlglot parse and two tree walks, ~5 ms); the rule set's checks are few and fixed.
_COMPILED: dict[tuple[str, str, str], str] = {}


def compile_check(template: str, params: dict[str, Any], dialect: str = AUTHORING_DIALECT) -> str:
    """The check's condition as SQL for `dialect`, with its parameters bound."""
    if dialect not in DIALECTS:
        raise CompileError(f"unknown dialect {dialect}")
    used = parameters(template)
    missing = used - set(params)
    if missing:
        raise CompileError(f"unknown parameter(s): {', '.join(sorted(missing))}")
    bound = repr(sorted((k, type(params[k]).__name__, repr(params[k])) for k in used))
    key = (template, dialect, bound)
    sql = _COMPILED.get(key)
    if sql is None:
        sql = _compile(template, params, dialect)
        if len(_COMPILED) >= 4096:
            _COMPILED.clear()
        _COMPILED[key] = sql
    return sql


def _compile(template: str, params: dict[str, Any], dialect: str) -> str:
    try:
        tree = sqlglot.parse_one(PARAM.sub(rf"{_PREFIX}\1", template), read=AUTHORING_DIALECT)
    except sqlglot.errors.SqlglotError as exc:
        raise CompileError(f"SQL does not parse ({str(exc).splitlines()[0]})") from None

    def param(node: exp.Expression) -> str | None:
        if isinstance(node, exp.Column) and node.name.startswith(_PREFIX) and not node.table:
            return node.name[len(_PREFIX) :]
        return None

    def bind(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.In):
            values: list[exp.Expression] = []
            for e in node.expressions:
                name = param(e)
                if name is None:
                    values.append(e)
                    continue
                v = params[name]
                items = list(v) if isinstance(v, list | tuple) else [v]
                values += [_literal(x) for x in items]
            node.set("expressions", values or [exp.Null()])
            return node
        name = param(node)
        if name is not None:
            if isinstance(params[name], list | tuple):
                raise CompileError(f"list parameter {name} is used outside IN (...)")
            return _literal(params[name])
        return node

    target = DIALECTS[dialect]
    tree = tree.transform(bind).transform(target.rewrite)
    return tree.sql(dialect=target.name)
