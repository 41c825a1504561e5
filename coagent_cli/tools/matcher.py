"""Lifting raw command lines onto declared tools.

A `match` pattern is an argv pattern, split like a shell line (shlex), e.g.

    git commit -m {message}
    mkdir {path}
    git commit --message={message}

A literal word must equal the argv word. A word that is exactly `{param}` matches one whole
argv word; inside a longer word (`--message={message}`) a placeholder matches a non-empty
run of characters. The pattern must have as many words as the argv. A placeholder never
binds a word that starts with `-` (an option) unless its pattern word starts with literal
text or follows a literal `--`: so `rm {path}` does not match `rm -rf`. The first word is
always literal. Bound values then go through the tool's own param validation (types,
patterns, workspace confinement, relative to the command's cwd); any refusal means no match.

The argv must be literal words (after quote removal, with no expansion pending): the
classifier only hands over simple commands.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from coagent_cli.core.keys import Key
from coagent_cli.errors import CoagentError
from coagent_cli.tools import template as tpl

if TYPE_CHECKING:
    from coagent_cli.tools.spec import ToolSpec


@dataclass(frozen=True)
class ToolMatch:
    tool: "ToolSpec"
    params: dict[str, Any]
    reads: frozenset[Key]
    writes: frozenset[Key]


@dataclass(frozen=True)
class _Word:
    literal: bool
    regex: re.Pattern[str]
    guarded: bool  # binds a placeholder at the word's start: refuse option-like words
    names: tuple[str, ...]


def compile_pattern(pattern: str) -> list[_Word]:
    return [_compile_word(w) for w in shlex.split(pattern)]


def _compile_word(word: str) -> _Word:
    names = tuple(tpl.placeholders(word))
    parts, last = [], 0
    for m in tpl.PLACEHOLDER.finditer(word):
        parts.append(re.escape(word[last:m.start()]) + f"(?P<{m.group(1)}>.+?)")
        last = m.end()
    parts.append(re.escape(word[last:]))
    first = tpl.PLACEHOLDER.match(word)
    return _Word(not names, re.compile("".join(parts), re.S), bool(first), names)


def pattern_problem(pattern: str, spec: "ToolSpec") -> str | None:
    try:
        words = compile_pattern(pattern)
    except (ValueError, re.error) as e:
        return f"cannot parse pattern: {e}"
    if not words or not words[0].literal:
        return "a pattern starts with a literal command name"
    bound = [n for w in words for n in w.names]
    for name in bound:
        if name not in spec.params:
            return f"placeholder {{{name}}} is not a declared param"
    if len(bound) != len(set(bound)):
        return "a placeholder may appear only once in a pattern"
    unbound = [n for n, p in spec.params.items() if p.is_required and n not in bound]
    return f"required param(s) {unbound} are not bound by the pattern" if unbound else None


def bind_argv(words: list[_Word], argv: list[str]) -> dict[str, str] | None:
    if len(words) != len(argv):
        return None
    values: dict[str, str] = {}
    after_dashdash = False
    for word, arg in zip(words, argv, strict=False):
        if word.guarded and arg.startswith("-") and not after_dashdash:
            return None
        m = word.regex.fullmatch(arg)
        if m is None:
            return None
        values.update(m.groupdict())
        after_dashdash = after_dashdash or (word.literal and arg == "--")
    return values


class ToolSource(Protocol):
    def tools(self) -> list["ToolSpec"]: ...


class ToolMatcher:
    """Finds the declared tool a raw argv stands for. Follows the library across reloads."""

    name = "declared-tools"

    def __init__(self, source: "ToolSource | Iterable[ToolSpec]") -> None:
        self._source = source

    def _specs(self) -> list["ToolSpec"]:
        tools = getattr(self._source, "tools", None)
        return list(tools()) if callable(tools) else list(self._source)  # type: ignore[arg-type]

    def match(self, argv: list[str], cwd: str | Path, workspace: str | Path) -> ToolMatch | None:
        for spec in self._specs():
            for pattern in spec.match:
                found = _try(spec, pattern, argv, Path(cwd), Path(workspace))
                if found is not None:
                    return found
        return None


def _try(spec: "ToolSpec", pattern: str, argv: list[str], cwd: Path,
         workspace: Path) -> ToolMatch | None:
    from coagent_cli.tools.render import bind_params, render_footprint

    raw = bind_argv(compile_pattern(pattern), argv)
    if raw is None:
        return None
    params: dict[str, Any] = dict(raw)
    for name in spec.path_params:  # a raw command's paths, defaults too, are relative to cwd
        value = raw.get(name, spec.params[name].default)
        if isinstance(value, str):
            params[name] = os.path.join(cwd, value)
    try:
        bound = bind_params(spec, params, workspace, coerce=True)
        reads, writes = render_footprint(spec, bound, workspace)
    except CoagentError:
        return None
    return ToolMatch(spec, bound, reads, writes)
