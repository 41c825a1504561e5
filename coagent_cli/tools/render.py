"""Binding params to a spec and rendering its templates against a workspace.

Path params are resolved the way the kernel will see them: the parent directory through
every symlink, the last component as written (so `delete_file link` removes the link, not its
target). Both that path and, for a symlink, its target must lie inside the workspace. The
canonical value is the workspace-relative path; it is what the command and the keys see.
`.git/` and `.coagent/` are refused: tools change git state only through the git tools, and
`.coagent/` holds coagent's own journal.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from coagent_cli.core.keys import Key
from coagent_cli.errors import InvalidKey, OutsideWorkspace, UsageError
from coagent_cli.tools import template as tpl

if TYPE_CHECKING:
    from coagent_cli.tools.spec import ParamSpec, ToolSpec

RESERVED = (".git", ".coagent")


def param_error(message: str) -> UsageError:
    return UsageError(message, code="tool_params")


def bind_params(spec: "ToolSpec", given: Mapping[str, Any], workspace: str | Path, *,
                coerce: bool = False) -> dict[str, Any]:
    """Validated params with defaults filled in and path params made canonical."""
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        raise param_error(f"{spec.name}: unknown param(s) {unknown}; "
                          f"known: {sorted(spec.params)}")
    root = workspace_root(workspace)
    out: dict[str, Any] = {}
    for name, p in spec.params.items():
        value = _value(spec.name, name, p, given, coerce)
        if value is not None and name in spec.path_params:
            value = _resolve_value(root, value)
        out[name] = value
    return out


def _value(tool: str, name: str, p: "ParamSpec", given: Mapping[str, Any], coerce: bool) -> Any:
    if name not in given or given[name] is None:
        if p.is_required:
            raise param_error(f"{tool}: missing required param {name!r}")
        return p.default
    value = _coerce(p.type, given[name]) if coerce else given[name]
    _check_value(tool, name, p, value)
    return value


def _coerce(kind: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return [value] if kind == "array" else value


def _check_value(tool: str, name: str, p: "ParamSpec", value: Any) -> None:
    from coagent_cli.tools.spec import _type_ok

    where = f"{tool}: param {name!r}"
    if not _type_ok(p.type, value):
        raise param_error(f"{where} must be a {p.type}, got {type(value).__name__} {value!r}")
    for text in value if isinstance(value, list) else [value]:
        if isinstance(text, str) and "\0" in text:
            raise param_error(f"{where} contains a NUL byte, which no command can receive")
        if p.pattern is not None and not re.fullmatch(p.pattern, str(text)):
            raise param_error(f"{where}: {text!r} does not match the pattern {p.pattern!r}")
    if p.enum is not None and value not in p.enum:
        raise param_error(f"{where} must be one of {p.enum}, got {value!r}")


def workspace_root(workspace: str | Path) -> Path:
    root = Path(os.path.realpath(workspace))
    if not root.is_dir():
        raise UsageError(f"workspace is not a directory: {workspace}")
    return root


def _resolve_value(root: Path, value: Any) -> Any:
    if isinstance(value, list):
        return [resolve_path(root, v) for v in value]
    return resolve_path(root, value)


def resolve_path(root: Path, value: str) -> str:
    """The canonical workspace-relative spelling of a path param, or OutsideWorkspace."""
    if value == "" or "\0" in value:
        raise param_error(f"not a usable path: {value!r}")
    raw = os.path.join(root, value)  # an absolute value replaces root
    stripped = raw.rstrip("/") or "/"
    name = os.path.basename(stripped)
    if name in ("", ".", ".."):
        placed = os.path.realpath(stripped)
    else:
        placed = os.path.join(os.path.realpath(os.path.dirname(stripped)), name)
    _confine(root, value, placed)
    _confine(root, value, os.path.realpath(placed))
    rel = os.path.relpath(placed, root)
    if rel.split(os.sep)[0] in RESERVED or (os.sep + ".git" + os.sep) in (os.sep + rel + os.sep):
        raise UsageError(f"path {value!r} is inside {rel.split(os.sep)[0]}/, which tools do "
                         "not touch", code="reserved_path")
    return "./" + rel if rel.startswith("-") else rel


def _confine(root: Path, value: str, resolved: str) -> None:
    if resolved != str(root) and not resolved.startswith(str(root) + os.sep):
        raise OutsideWorkspace(f"path {value!r} resolves to {resolved}, outside the workspace "
                               f"{root}; tools only touch paths inside it")


def render_footprint(spec: "ToolSpec", params: Mapping[str, Any],
                     workspace: str | Path) -> tuple[frozenset[Key], frozenset[Key]]:
    root = workspace_root(workspace)
    return (frozenset(k for t in spec.reads for k in render_keys(t, params, root)),
            frozenset(k for t in spec.writes for k in render_keys(t, params, root)))


def render_keys(text: str, params: Mapping[str, Any], root: Path) -> list[Key]:
    names = tpl.placeholders(text)
    arrays = [n for n in names if isinstance(params.get(n), list)]
    if arrays:
        return [k for v in params[arrays[0]] for k in render_keys(text, {**params, arrays[0]: v},
                                                                    root)]
    rendered = tpl.substitute(text, lambda n: "" if params[n] is None else str(params[n]))
    scheme, sep, rest = rendered.partition(":")
    if sep and scheme in ("file", "dir"):
        rest = "" if rest in ("", ".") and scheme == "dir" else resolve_path(root, rest)
        rendered = f"{scheme}:{rest}"
    try:
        return [Key.parse(rendered)]
    except InvalidKey as e:
        raise param_error(f"footprint {text!r} renders to no valid key: {e}") from None


def render_forward(spec: "ToolSpec", params: Mapping[str, Any],
                   captures: Mapping[str, str]) -> str:
    assert spec.command is not None
    return tpl.render_command(spec.command, {**params, **captures})
