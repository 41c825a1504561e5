"""Templates: `{param}` placeholders in command and footprint templates.

A placeholder is `{identifier}` not preceded by `$`, so bash's own `${var}` passes through
untouched. When a command template is rendered, every value is shell-quoted (shlex.quote), so
a placeholder must stand where an unquoted shell word could stand: inside single quotes,
double quotes, backticks or a heredoc body the quoting would not protect it, and such a
template is refused when the spec is loaded (`command_problems`).
"""

from __future__ import annotations

import re
import shlex
from typing import Callable, Mapping

PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(template: str) -> list[str]:
    """Names used in a template, in order of first use."""
    seen: dict[str, None] = {}
    for m in PLACEHOLDER.finditer(template):
        seen.setdefault(m.group(1), None)
    return list(seen)


def substitute(template: str, value_of: Callable[[str], str]) -> str:
    return PLACEHOLDER.sub(lambda m: value_of(m.group(1)), template)


def render_command(template: str, values: Mapping[str, object]) -> str:
    """Render a bash template; every value becomes one (or, for a list, several) quoted words."""
    return substitute(template, lambda name: shell_words(values[name]))


def shell_words(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(shlex.quote(_text(v)) for v in value) if value else "''"
    return shlex.quote(_text(value))


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# --- where may a placeholder stand? ------------------------------------------------------

_OPEN = {"'": "single", '"': "double", "`": "backtick"}


def command_problems(template: str) -> list[str]:
    """Reasons a command template is unsafe to render (empty when it is fine)."""
    problems: list[str] = []
    if re.search(r"<<(?!<)", template):
        problems.append("heredocs are not allowed in a template (a placeholder in a heredoc "
                        "body is not protected by quoting); use printf '%s' {param} | ...")
    for name, context in _placeholder_contexts(template):
        if context != "plain":
            problems.append(f"placeholder {{{name}}} stands inside {context} quotes; write it "
                            "bare, it is shell-quoted for you")
    return problems


def _placeholder_contexts(template: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    stack = ["plain"]
    i, n = 0, len(template)
    while i < n:
        state, ch = stack[-1], template[i]
        m = PLACEHOLDER.match(template, i) if ch == "{" and template[i - 1:i] != "$" else None
        if m:
            found.append((m.group(1), "plain" if state in ("plain", "paren") else state))
            i = m.end()
            continue
        i = _step(template, i, stack)
    if stack != ["plain"]:
        found.append(("<end>", f"unclosed {stack[-1]}"))
    return found


def _step(t: str, i: int, stack: list[str]) -> int:
    """Advance the quoting state machine over one token starting at t[i]; return next index."""
    state, ch = stack[-1], t[i]
    if state == "single":
        if ch == "'":
            stack.pop()
        return i + 1
    if ch == "\\":
        return i + 2
    if state == "dollar-single":
        if ch == "'":
            stack.pop()
        return i + 1
    if state == "backtick":
        if ch == "`":
            stack.pop()
        return i + 1
    if t.startswith("$(", i):
        stack.append("paren")
        return i + 2
    if state == "double":
        if ch == '"':
            stack.pop()
        elif ch == "`":
            stack.append("backtick")
        return i + 1
    return _step_plain(t, i, stack)


def _step_plain(t: str, i: int, stack: list[str]) -> int:
    ch = t[i]
    if t.startswith("$'", i):
        stack.append("dollar-single")
        return i + 2
    if ch in _OPEN:
        stack.append(_OPEN[ch])
    elif ch == "(":
        stack.append("paren")
    elif ch == ")" and stack[-1] == "paren":
        stack.pop()
    elif ch == "#" and (i == 0 or t[i - 1] in " \t\n;&|("):
        end = t.find("\n", i)
        return len(t) if end < 0 else end
    return i + 1
