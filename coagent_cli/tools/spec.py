"""The tool spec: what a declared tool is, validated on construction.

A spec is plain data (pydantic, unknown fields refused). Structural checks are pydantic's;
the cross-field checks (every placeholder is a declared param, a snapshot inverse only covers
file and dir keys, ...) run in `_semantic_problem` and raise `FieldProblem`, which names the
field so the loader can point at its line.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coagent_cli.core.keys import Key
from coagent_cli.errors import InvalidKey
from coagent_cli.tools import template as tpl

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
ParamType = Literal["string", "integer", "boolean", "number", "array"]
PATH_SCHEMES = ("file", "dir")
SNAPSHOT, NONE = "snapshot", "none"


class FieldProblem(ValueError):
    """A cross-field problem in a spec; `loc` is the path of the offending field."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Strict):
    type: ParamType = "string"
    description: str = ""
    # None: required exactly when no default is given.
    required: bool | None = None
    default: Any = None
    enum: list[Any] | None = None
    # A regular expression the whole (string) value must match, e.g. for branch names.
    pattern: str | None = None
    # "path": a workspace path; resolved, confined to the workspace, rendered relative.
    # Params used as the whole path of a file:/dir: footprint are paths without saying so.
    format: Literal["path"] | None = None

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None


class Example(_Strict):
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    # Files (path -> text) written into the scratch copy before the example runs.
    files: dict[str, str] = Field(default_factory=dict)
    # A bash script run in the scratch copy before the example (after `files`).
    setup: str = ""


class ToolSpec(_Strict):
    name: str = Field(pattern=IDENTIFIER)
    description: str
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    # Exactly one of: a bash template run in the workspace, or a Python implementation's name.
    command: str | None = None
    builtin: str | None = None
    # name -> bash template run before the forward op; its stdout (trailing newlines
    # stripped) is a value the inverse (and the command) may use, e.g. the old HEAD.
    capture: dict[str, str] = Field(default_factory=dict)
    reads: list[str] = Field(default_factory=list)
    writes: list[str] = Field(default_factory=list)
    # A bash template, "snapshot" (restore before-images of the write keys), or "none".
    inverse: str = SNAPSHOT
    # False when the inverse cannot restore everything; inverse_note then says what not.
    inverse_exact: bool = True
    inverse_note: str = ""
    # "rerun": redo re-runs the forward op on the current state; "none": cannot be redone.
    redo: Literal["rerun", "none"] = "rerun"
    # argv patterns of raw command lines this tool stands for (see matcher.py).
    match: list[str] = Field(default_factory=list)
    examples: list[Example] = Field(default_factory=list)
    # None: irreversible exactly when inverse is "none".
    irreversible: bool | None = None

    @model_validator(mode="after")
    def _check_semantics(self) -> "ToolSpec":
        problem = _semantic_problem(self)
        if problem is not None:
            raise problem
        return self

    @property
    def is_irreversible(self) -> bool:
        return self.irreversible if self.irreversible is not None else self.inverse == NONE

    @property
    def path_params(self) -> frozenset[str]:
        implicit = {p for t in self.reads + self.writes for p in _whole_path_param(t)}
        explicit = {n for n, p in self.params.items() if p.format == "path"}
        return frozenset(implicit | explicit)

    def parameters_schema(self) -> dict[str, Any]:
        """The params as a JSON schema object (what an LLM function-tool declaration wants)."""
        props = {n: _json_schema(p) for n, p in self.params.items()}
        required = [n for n, p in self.params.items() if p.is_required]
        return {"type": "object", "properties": props, "required": required,
                "additionalProperties": False}


def _json_schema(p: ParamSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"type": p.type, "description": p.description}
    if p.type == "array":
        out["items"] = {"type": "string"}
    if p.enum is not None:
        out["enum"] = p.enum
    if p.default is not None:
        out["default"] = p.default
    return out


def _whole_path_param(footprint: str) -> list[str]:
    scheme, _, rest = footprint.partition(":")
    m = re.fullmatch(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", rest)
    return [m.group(1)] if scheme in PATH_SCHEMES and m else []


# --- cross-field checks ------------------------------------------------------------------

def _semantic_problem(spec: ToolSpec) -> FieldProblem | None:
    checks = (_check_body, _check_params, _check_capture, _check_inverse, _check_footprints,
              _check_match, _check_examples)
    for check in checks:
        try:
            check(spec)
        except FieldProblem as problem:
            return problem
    return None


def _check_body(spec: ToolSpec) -> None:
    if (spec.command is None) == (spec.builtin is None):
        raise FieldProblem(("command",), "give exactly one of `command` or `builtin`")
    if spec.builtin is not None:
        from coagent_cli.tools.builtin_impl import IMPLEMENTATIONS

        if spec.builtin not in IMPLEMENTATIONS:
            known = ", ".join(sorted(IMPLEMENTATIONS))
            raise FieldProblem(("builtin",), f"unknown builtin {spec.builtin!r} (known: {known})")
    if spec.command is not None:
        _check_template(spec.command, ("command",), set(spec.params) | set(spec.capture))


def _check_template(text: str, loc: tuple[str | int, ...], known: set[str]) -> None:
    for name in tpl.placeholders(text):
        if name not in known:
            raise FieldProblem(loc, f"placeholder {{{name}}} is not a declared param"
                               + (" or capture" if loc[0] != "capture" else ""))
    problems = tpl.command_problems(text)
    if problems:
        raise FieldProblem(loc, problems[0])


def _check_params(spec: ToolSpec) -> None:
    for name, p in spec.params.items():
        loc = ("params", name)
        if not re.match(IDENTIFIER, name):
            raise FieldProblem(loc, f"param name {name!r} is not an identifier")
        if p.required and p.default is not None:
            raise FieldProblem(loc + ("default",), "a required param cannot have a default")
        if p.default is not None and not _type_ok(p.type, p.default):
            raise FieldProblem(loc + ("default",), f"default {p.default!r} is not a {p.type}")
        for i, v in enumerate(p.enum or []):
            if not _type_ok(p.type, v):
                raise FieldProblem(loc + ("enum", i), f"enum value {v!r} is not a {p.type}")
        if p.pattern is not None:
            _check_regex(p.pattern, loc + ("pattern",))
        if p.format == "path" and p.type not in ("string", "array"):
            raise FieldProblem(loc + ("format",), "format: path needs type string or array")


def _check_regex(pattern: str, loc: tuple[str | int, ...]) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise FieldProblem(loc, f"not a regular expression: {e}") from None


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_capture(spec: ToolSpec) -> None:
    for name, text in spec.capture.items():
        if not re.match(IDENTIFIER, name) or name in spec.params:
            raise FieldProblem(("capture", name),
                               f"capture name {name!r} must be an identifier and not a param")
        _check_template(text, ("capture", name), set(spec.params))


def _check_inverse(spec: ToolSpec) -> None:
    if spec.inverse == NONE:
        if spec.irreversible is False:
            raise FieldProblem(("irreversible",), "inverse: none means the tool is irreversible")
    elif spec.inverse == SNAPSHOT:
        for i, text in enumerate(spec.writes):
            if text.partition(":")[0] not in PATH_SCHEMES:
                raise FieldProblem(("writes", i), "inverse: snapshot restores only file: and "
                                   f"dir: keys; {text!r} needs an inverse command")
    else:
        _check_template(spec.inverse, ("inverse",), set(spec.params) | set(spec.capture))
    if not spec.inverse_exact and not spec.inverse_note.strip():
        raise FieldProblem(("inverse_exact",), "an inexact inverse needs an `inverse_note` "
                           "that says what it does not restore")


def _check_footprints(spec: ToolSpec) -> None:
    for field in ("reads", "writes"):
        for i, text in enumerate(getattr(spec, field)):
            _check_footprint(text, (field, i), spec)


def _check_footprint(text: str, loc: tuple[str | int, ...], spec: ToolSpec) -> None:
    scheme = text.partition(":")[0]
    if tpl.placeholders(scheme):
        raise FieldProblem(loc, "the key scheme (before ':') must be literal")
    for name in tpl.placeholders(text):
        if name not in spec.params:
            raise FieldProblem(loc, f"placeholder {{{name}}} is not a declared param")
        if spec.params[name].type == "array" and len(tpl.placeholders(text)) > 1:
            raise FieldProblem(loc, "an array param must be the only placeholder in a key")
    try:
        Key.parse(tpl.substitute(text, lambda _: "x"))
    except InvalidKey as e:
        raise FieldProblem(loc, str(e)) from None


def _check_match(spec: ToolSpec) -> None:
    from coagent_cli.tools.matcher import pattern_problem

    for i, pattern in enumerate(spec.match):
        problem = pattern_problem(pattern, spec)
        if problem:
            raise FieldProblem(("match", i), problem)


def _check_examples(spec: ToolSpec) -> None:
    for i, ex in enumerate(spec.examples):
        for name in ex.params:
            if name not in spec.params:
                raise FieldProblem(("examples", i, "params", name), f"unknown param {name!r}")
        missing = [n for n, p in spec.params.items() if p.is_required and n not in ex.params]
        if missing:
            raise FieldProblem(("examples", i, "params"), f"missing required param(s) {missing}")
