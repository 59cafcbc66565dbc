"""Reading a rule set's YAML files: each file's data with the line of every key and list
element (what the lint's problems cite), the rule set's hash over its files, and the guards
every YAML custodes reads goes through (no alias, bounded depth, a tag's misfit a YAML error)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from custodes.rules.types import LintProblem


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.yaml") if p.is_file())


def ruleset_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in _files(folder):
        h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


MAX_YAML_DEPTH = 64


class YamlRefused(yaml.MarkedYAMLError):
    """YAML that parses but that custodes does not read: nested deeper than `MAX_YAML_DEPTH`
    (the loader recurses once per level) or using an alias (one small file can name a value
    millions of times over)."""


def prescan_yaml(text: str) -> None:
    """Refuse YAML nested too deeply or using aliases, before the recursive loader sees it.
    The event parser is iterative, so this walk is bounded by the text's size; it raises a
    `yaml.YAMLError` with its mark, which every reader already reports with its line.

    By hand: PyYAML has no depth limit and no switch to refuse aliases."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        # The pure-Python parser (SafeLoader) marks with yaml.error.Mark; the stubs also allow
        # the C parser's.
        mark = cast(yaml.error.Mark, event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            raise YamlRefused(
                problem="an alias (*name) is not accepted; write the value out",
                problem_mark=mark,
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise YamlRefused(
                    problem=f"nested deeper than {MAX_YAML_DEPTH} levels",
                    problem_mark=mark,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def construct_yaml(text: str) -> Any:
    """`yaml.safe_load`, with what PyYAML's constructors raise for a value that does not fit
    its explicit tag (`!!int m` ValueError, `!!timestamp x` AttributeError, `!!int ''`
    IndexError: found by fuzzing) turned into a `yaml.YAMLError` like any other bad YAML.
    Call it after `prescan_yaml`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError):
        raise YamlRefused(problem="a value does not match its tag") from None


def _node_lines(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Line numbers (1-based) of every key and list element, by path."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out.update(_node_lines(v, (*path, k.value)))
            out[(*path, k.value)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out.update(_node_lines(v, (*path, i)))
    return out


@dataclass(frozen=True)
class Document:
    """One YAML file of a rule set as read: its data (None when it could not be read), the
    line of each key and list element by path, and the problems reading it."""

    data: Any
    lines: dict[tuple[Any, ...], int]
    problems: tuple[LintProblem, ...] = ()


def _read(path: Path, folder: Path) -> Document:
    rel = str(path.relative_to(folder))
    try:
        text = path.read_text(encoding="utf-8")
        prescan_yaml(text)
        node = yaml.compose(text)
        data = construct_yaml(text)
    except UnicodeDecodeError:
        return Document(None, {}, (LintProblem(rel, None, "not UTF-8 text"),))
    except OSError as exc:
        return Document(None, {}, (LintProblem(rel, None, f"cannot be read ({exc.strerror})"),))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return Document(
            None,
            {},
            (
                LintProblem(
                    rel,
                    mark.line + 1 if mark else None,
                    f"not valid YAML ({getattr(exc, 'problem', exc)})",
                ),
            ),
        )
    return Document(data, _node_lines(node) if node is not None else {})


def read_documents(folder: Path) -> dict[str, Document]:
    """Every YAML file of a rule-set folder, read, by its path relative to the folder."""
    return {str(p.relative_to(folder)): _read(p, folder) for p in _files(folder)}
