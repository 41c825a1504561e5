"""Loading tool specs from YAML, with errors that name the file, the line and the field.

A file holds one spec (a mapping) or several (a list of mappings). The YAML is parsed twice:
once into nodes, to record the line of every field and refuse duplicate keys, and once into
data for pydantic. Every failure, from unreadable bytes to a cross-field problem, becomes a
`SpecLoadError`; nothing else escapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from coagent_cli.errors import ToolSpecError
from coagent_cli.tools.spec import FieldProblem, ToolSpec

Loc = tuple[str | int, ...]


class SpecLoadError(ToolSpecError):
    """A spec file that does not load; `problems` holds (line, field, message) triples."""

    def __init__(self, file: str, problems: list[tuple[int, str, str]]) -> None:
        self.file = file
        self.problems = problems
        self.line, self.field = problems[0][0], problems[0][1]
        text = "\n".join(f"{file}:{line}: {field or '(spec)'}: {msg}"
                         for line, field, msg in problems)
        super().__init__(text)


def load_spec_file(path: str | Path) -> list[ToolSpec]:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise SpecLoadError(str(path), [(1, "", f"cannot read: {reason}")]) from None
    return load_spec_text(text, str(path))


def load_spec_text(text: str, source: str = "<text>") -> list[ToolSpec]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecLoadError(source, [_yaml_problem(e)]) from None
    marks: dict[Loc, int] = {}
    duplicate = _record_marks(node, (), marks) if node is not None else None
    if duplicate:
        raise SpecLoadError(source, [duplicate])
    items, base = (data, ()) if isinstance(data, list) else ([data], None)
    specs = []
    for i, item in enumerate(items):
        prefix: Loc = (i,) if base is not None else ()
        specs.append(_validate(item, prefix, marks, source))
    return specs


def _yaml_problem(e: yaml.YAMLError) -> tuple[int, str, str]:
    mark = getattr(e, "problem_mark", None)
    line = mark.line + 1 if mark is not None else 1
    return line, "", f"not valid YAML: {getattr(e, 'problem', None) or e}"


def _record_marks(node: yaml.Node, loc: Loc, marks: dict[Loc, int]) -> tuple[int, str, str] | None:
    marks.setdefault(loc, node.start_mark.line + 1)
    children: list[tuple[Loc, yaml.Node]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
            if name in seen:
                return key.start_mark.line + 1, _field(loc + (name,)), f"duplicate key {name!r}"
            seen.add(name)
            marks[loc + (name,)] = key.start_mark.line + 1
            children.append((loc + (name,), value))
    elif isinstance(node, yaml.SequenceNode):
        children = [(loc + (i,), v) for i, v in enumerate(node.value)]
    for child_loc, child in children:
        problem = _record_marks(child, child_loc, marks)
        if problem:
            return problem
    return None


def _validate(item: Any, prefix: Loc, marks: dict[Loc, int], source: str) -> ToolSpec:
    if not isinstance(item, dict):
        raise SpecLoadError(source, [(marks.get(prefix, 1), _field(prefix),
                                      "a tool spec is a mapping of fields")])
    try:
        return ToolSpec.model_validate(item)
    except ValidationError as e:
        problems = [_problem(err, prefix, marks) for err in e.errors()]
        raise SpecLoadError(source, problems) from None


def _problem(err: Any, prefix: Loc, marks: dict[Loc, int]) -> tuple[int, str, str]:
    loc: Loc = prefix + tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    message = err["msg"]
    if isinstance(cause, FieldProblem):
        loc, message = loc + cause.loc, str(cause)
    elif err["type"] == "extra_forbidden":
        message = "unknown field"
    elif err["type"] == "missing":
        message = "missing required field"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message += f" (got {err['input']!r})"
    return _line(loc, marks), _field(loc), message.removeprefix("Value error, ")


def _line(loc: Loc, marks: dict[Loc, int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in marks:
            return marks[loc[:end]]
    return 1


def _field(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
