"""Map one bash command line to an op footprint: tool, read, write, irreversible or raw.

    classify(line, cwd=..., workspace=...) -> Classification

The line is parsed with bashlex. Each simple command is looked up in a table of known
commands (`commands`, `writers`, `subcommands`) and gives a footprint; the footprints of
the parts of a list, pipeline, subshell, group, if or loop are combined: keys are united
and the kind is the most demanding one (irreversible > raw > write > read; a line with a
network call cannot be undone, so it is held even when another part of it is raw).

Rules worth knowing:
- Anything we cannot be sure about is 'raw' (reads and writes `*`), with the reason in
  one line: a parse failure, an unknown command or option, eval/source/functions, a
  command name that is expanded, a path with no static directory. A wrong 'read' would be
  a correctness bug; a needless 'raw' only costs speed.
- Paths resolve against the cwd, tracked through `cd` inside the line (after `a; cd x; b`
  the cwd of b is either one; after `cd $X` it is unknown). Globs and quoted expansions
  cover the directory of their static prefix (`src/*.py` -> dir:src), on the assumption
  that an expanded part does not climb with `..`.
- Paths outside the workspace are not keys; they are listed in `outside`. A WRITE outside
  the workspace keeps the kind 'write' and is also listed in `outside_writes`: the caller
  refuses such a line (keys cannot describe it, and a snapshot of the workspace cannot
  undo it). Device files (/dev/null, /dev/stderr, ...) are ignored.
- A line that is exactly one simple command with static words is first offered to the
  declared tools; the first `ToolMatcher` that matches makes it kind 'tool'.
- Names are taken to mean the standard utilities: aliases, functions or PATH entries that
  shadow them (set up by an earlier line) are beyond a per-line classifier.

The classifier never raises on any input string; it does not touch the file system.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import bashlex

from coagent_cli.core.keys import ALL, Key
from coagent_cli.shell.commands import COMMANDS, Handler
from coagent_cli.shell.footprint import Builder, Effect, Kind, Place, Unknown, raw
from coagent_cli.shell.subcommands import SUBCOMMANDS
from coagent_cli.shell.words import Word, read_word
from coagent_cli.shell.writers import WRITERS

HANDLERS: dict[str, Handler] = {**COMMANDS, **WRITERS, **SUBCOMMANDS}

_MAX_DEPTH = 60
_MAX_NESTED_SHELLS = 3
_SYSTEM_BIN = re.compile(r"^/(usr/)?(local/)?bin/")
_QUOTED_HEREDOC = re.compile(
    r"(?<!<)<<(-?)([ \t]*)(?:(['\"])([A-Za-z_][A-Za-z0-9_]*)\3|\\([A-Za-z_][A-Za-z0-9_]*))")
# Variables that change what later commands do or where they look.
_DANGEROUS_VARS = re.compile(
    r"^(PATH|IFS|CDPATH|HOME|BASH_ENV|ENV|SHELLOPTS|BASHOPTS|PS4|PROMPT_COMMAND|"
    r"POSIXLY_CORRECT|GLOBIGNORE|LD_\w*|GIT_\w*|BASH_FUNC\w*)$")
# Variables safe to set for a single known command.
_SAFE_PREFIX_VARS = re.compile(
    r"^(LC_\w+|LANG|LANGUAGE|TZ|NO_COLOR|FORCE_COLOR|COLUMNS|LINES|TERM|GREP_COLORS?|CLICOLOR\w*)$")
_DECLARERS = frozenset({"export", "unset", "declare", "local", "readonly", "typeset"})
_SHELLS = frozenset({"bash", "sh"})


@dataclass(frozen=True, slots=True)
class ToolMatch:
    """A declared tool recognised in a command line, with its footprint."""

    tool: str
    params: dict[str, Any]
    reads: frozenset[Key]
    writes: frozenset[Key]


class FoundTool(Protocol):
    """What a matcher returns: `ToolMatch`, or any object of that shape. `tool` may be the
    tool's name or a spec object with a `name` (as coagent_cli.tools returns)."""

    @property
    def tool(self) -> Any: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def reads(self) -> frozenset[Key]: ...
    @property
    def writes(self) -> frozenset[Key]: ...


class ToolMatcher(Protocol):
    """Recognises command lines that are invocations of a declared tool."""

    name: str

    def match(self, argv: list[str], cwd: Path, workspace: Path) -> FoundTool | None: ...


@dataclass(frozen=True, slots=True)
class Classification:
    """What a command line does to the shared state, and why we think so."""

    kind: Kind
    reads: frozenset[Key]
    writes: frozenset[Key]
    reason: str                                  # one line for a person
    tool: str | None = None
    params: dict[str, Any] | None = None
    outside: tuple[str, ...] = ()                # absolute paths outside the workspace it touches
    outside_writes: tuple[str, ...] = ()         # those of them it writes (the caller refuses)
    # Files the line rewrites whole without reading them (a truncating redirect): their
    # new bytes do not depend on the old ones, so a redo after an earlier agent's change
    # is a three-way merge, not a re-run that would erase that change.
    overwrites: frozenset[Key] = frozenset()


def classify(line: str, *, cwd: Path, workspace: Path, tools: Sequence[ToolMatcher] = (),
             home: Path | None = None) -> Classification:
    """Classify one command line. `home` resolves `~` (default: this process's HOME)."""
    place = Place(workspace=_posix(workspace), cwds=(_posix(cwd),), home=_home(home))
    if tools:
        matched = _match_tool(line, tools, cwd, workspace)
        if matched is not None:
            return matched
    return _finish(_Walker(0).source(line, place))


def _posix(path: Path) -> str:
    return os.path.normpath(os.fspath(path)).replace(os.sep, "/")


def _home(home: Path | None) -> str | None:
    text = os.path.expanduser("~") if home is None else os.fspath(home)
    return _posix(Path(text)) if text.startswith("/") else None


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n") or "no reason given"


def _finish(effect: Effect) -> Classification:
    if effect.kind in ("raw", "irreversible"):
        return Classification(kind=effect.kind, reads=frozenset({ALL}), writes=frozenset({ALL}),
                              reason=_one_line(effect.reason), outside=effect.outside,
                              outside_writes=effect.outside_writes)
    names = ", ".join(effect.names) or "nothing"
    reason = f"read-only: {names}" if effect.kind == "read" else f"known footprint: {names}"
    if effect.outside_writes:
        reason += "; writes outside the workspace: " + ", ".join(effect.outside_writes)
    overwrites = frozenset(k for k in effect.truncates
                           if k.scheme == "file" and not any(r.covers(k) for r in effect.reads))
    return Classification(kind=effect.kind, reads=effect.reads, writes=effect.writes,
                          reason=_one_line(reason), outside=effect.outside,
                          outside_writes=effect.outside_writes, overwrites=overwrites)


def _match_tool(line: str, tools: Sequence[ToolMatcher], cwd: Path,
                workspace: Path) -> Classification | None:
    argv = _plain_argv(line)
    if argv is None:
        return None
    for tool in tools:
        found = tool.match(argv, cwd, workspace)
        if found is not None:
            name = found.tool if isinstance(found.tool, str) else str(found.tool.name)
            return Classification(kind="tool", reads=frozenset(found.reads),
                                  writes=frozenset(found.writes), reason=f"declared tool {name}",
                                  tool=name, params=dict(found.params))
    return None


def _plain_argv(line: str) -> list[str] | None:
    """The argv of a line that is one simple command of static words, else None."""
    trees = _parse(line)
    if trees is None or len(trees) != 1 or trees[0].kind != "command":
        return None
    if any(part.kind != "word" for part in trees[0].parts):
        return None
    words = [read_word(line[p.pos[0]:p.pos[1]]) for p in trees[0].parts]
    return [w.text for w in words] if all(w.static for w in words) else None


def _parse(source: str) -> list[Any] | None:
    try:
        return list(bashlex.parse(source))
    except Exception:  # bashlex raises many builtin types on input it cannot read
        return None


def _rewrite_quoted_heredocs(line: str) -> tuple[str, frozenset[int]]:
    """bashlex cannot read <<'EOF': unquote such delimiters, keeping every position."""
    starts: set[int] = set()

    def unquote(m: re.Match[str]) -> str:
        starts.add(m.start())
        name = m.group(4) or m.group(5)
        pad = len(m.group(0)) - len(m.group(1)) - len(m.group(2)) - len(name) - 2
        return "<<" + m.group(1) + m.group(2) + " " * pad + name

    return _QUOTED_HEREDOC.sub(unquote, line), frozenset(starts)


def _only_comments(line: str) -> bool:
    return all(not s.strip() or s.lstrip().startswith("#") for s in line.splitlines())


def _nodes(node: Any) -> Iterator[Any]:
    yield node
    for attr in ("parts", "list", "redirects"):
        for child in getattr(node, attr, None) or ():
            yield from _nodes(child)
    for attr in ("command", "output", "heredoc"):
        child = getattr(node, attr, None)
        if child is not None and hasattr(child, "kind"):
            yield from _nodes(child)


def _union(places: Sequence[Place]) -> Place:
    if any(not p.cwds for p in places):
        return places[0].with_cwds(())
    return places[0].with_cwds(tuple(c for p in places for c in p.cwds))


class _Walker:
    """Walks one parsed source; `shells` counts nested `bash -c` levels."""

    def __init__(self, shells: int) -> None:
        self.shells = shells
        self.text = ""
        self.literal_heredocs: frozenset[int] = frozenset()

    def source(self, line: str, place: Place) -> Effect:
        text, quoted = _rewrite_quoted_heredocs(line)
        trees = _parse(text)
        if trees is None:
            if _only_comments(line):
                return Effect(reason="empty line")
            return raw("the bash parser cannot read this line")
        heredocs = {n.pos[0] for t in trees for n in _nodes(t)
                    if n.kind == "redirect" and n.type in ("<<", "<<-")}
        if not quoted <= heredocs:
            return raw("a quoted heredoc delimiter in an unexpected place")
        self.text, self.literal_heredocs = text, quoted
        effect, _ = self._sequence(trees, place, 0)
        return effect

    def _node(self, node: Any, place: Place, depth: int) -> tuple[Effect, Place]:
        try:
            if depth > _MAX_DEPTH:
                raise Unknown("nesting too deep")
            return self._dispatch(node, place, depth + 1)
        except Unknown as why:
            return raw(str(why)), place

    def _dispatch(self, node: Any, place: Place, depth: int) -> tuple[Effect, Place]:
        kind = node.kind
        if kind == "command":
            return self._command(node, place, depth)
        if kind == "list":
            return self._list(node.parts, place, depth)
        if kind == "pipeline":
            parts = [p for p in node.parts if p.kind not in ("pipe", "reservedword")]
            effect = Effect()
            for part in parts:
                effect |= self._node(part, place, depth)[0]
            return effect, place
        if kind == "compound":
            return self._compound(node, place, depth)
        if kind == "for":
            return self._for(node, place, depth)
        if kind in ("if", "while", "until"):
            return self._conditional(node, place, depth)
        if kind in ("reservedword", "operator", "pipe"):
            return Effect(), place
        raise Unknown(f"shell construct {kind!r} (functions and the like are not followed)")

    def _sequence(self, nodes: Sequence[Any], place: Place, depth: int) -> tuple[Effect, Place]:
        return self._list([n for n in nodes if n.kind != "reservedword"], place, depth)

    def _list(self, parts: Sequence[Any], place: Place, depth: int) -> tuple[Effect, Place]:
        """a && b; c || d: after `&&` the cwd is the previous one's; else any seen so far."""
        effect, seen, current, only_and = Effect(), [place], place, True
        after_node = False
        for part in parts:
            if part.kind == "operator" or after_node:  # adjacent nodes: lines, if/then parts
                only_and &= part.kind == "operator" and part.op == "&&"
                current = current if only_and else _union(seen)
            after_node = part.kind != "operator"
            if not after_node:
                continue
            step, current = self._node(part, current, depth)
            effect |= step
            seen.append(current)
        return effect, _union(seen)

    def _compound(self, node: Any, place: Place, depth: int) -> tuple[Effect, Place]:
        inner = [n for n in node.list if n.kind != "reservedword"]
        effect, after = self._list(inner, place, depth)
        first = node.list[0] if node.list else None
        if first is not None and first.kind == "reservedword" and first.word == "(":
            after = place  # a subshell: cd inside it does not leak out
        for redirect in getattr(node, "redirects", None) or ():
            effect |= self._redirect(redirect, place, depth)
        return effect, after

    def _for(self, node: Any, place: Place, depth: int) -> tuple[Effect, Place]:
        parts = node.parts
        words = [p.word for p in parts if p.kind == "reservedword"]
        if len(parts) < 2 or parts[1].kind != "word":
            raise Unknown("a for loop we cannot read")
        name = parts[1].word
        effect, items = Effect(), []
        if "in" in words:
            begin = next(i for i, p in enumerate(parts) if p.kind == "reservedword" and p.word == "in")
            for item in parts[begin + 1:]:
                if item.kind == "word":
                    word, sub = self._word(item, place, depth)
                    effect |= sub | self._glob_reads([word], place)
                    items.append(word)
        body = [p for p in parts[2:] if p.kind not in ("word", "reservedword")]
        bindable = "in" in words and _bindable(items) and not _reassigns(body, name)
        bound = place.bind(name, tuple(items)) if bindable else place
        step, after = self._list(body, bound, depth)
        if after.cwds != place.cwds:
            raise Unknown("a loop body changes directory")
        return effect | step, place

    def _conditional(self, node: Any, place: Place, depth: int) -> tuple[Effect, Place]:
        effect, after = self._sequence(node.parts, place, depth)
        if node.kind != "if" and after.cwds != place.cwds:
            raise Unknown("a loop body changes directory")
        return effect, _union([place, after])

    # -- simple commands ------------------------------------------------------------------

    def _word(self, node: Any, place: Place, depth: int) -> tuple[Word, Effect]:
        """The word a node stands for, and the effect of substitutions inside it."""
        effect = Effect()
        for inner in _nodes(node):
            if inner.kind in ("commandsubstitution", "processsubstitution"):
                effect |= self._node(inner.command, place, depth)[0]
        return read_word(self.text[node.pos[0]:node.pos[1]]), effect

    def _command(self, node: Any, place: Place, depth: int) -> tuple[Effect, Place]:
        effect, words, assigns = Effect(), [], []
        for part in node.parts:
            if part.kind == "redirect":
                effect |= self._redirect(part, place, depth)
                continue
            word, sub = self._word(part, place, depth)
            effect |= sub
            (assigns if part.kind == "assignment" else words).append(word)
        if not words:
            _check_assignments([w.text for w in assigns], standalone=True)
            return effect | Effect(names=("assignment",)), place
        _check_assignments([w.text for w in assigns], standalone=False)
        step, after = self._simple(words, place, depth)
        return effect | step, after

    def _simple(self, words: list[Word], place: Place, depth: int) -> tuple[Effect, Place]:
        head = words[0]
        if not head.static and not (head.text == "[" and not head.expands):
            raise Unknown(f"the command name {head.text!r} is expanded")
        name = _SYSTEM_BIN.sub("", head.text)
        args = _expand_bound(words[1:], place)
        if name in ("cd", "pushd"):
            return Effect(names=(name,)), _change_dir(args, place)
        if name == "popd":
            return Effect(names=(name,)), place.with_cwds(())
        if name in _DECLARERS:
            _check_assignments([w.text for w in args], standalone=True)
            return Effect(names=(name,)), place
        if name == "command" and args and args[0].text in ("-v", "-V"):
            return Effect(names=(name,)), place
        if name == "command" and args and not args[0].text.startswith("-"):
            return self._simple(args, place, depth)
        if name in _SHELLS and len(args) == 2 and args[0].static and args[0].text == "-c":
            return self._nested_shell(args[1], place), place
        handler = HANDLERS.get(name)
        if handler is None or "/" in name:
            raise Unknown(f"{name} is not a known command")
        return handler(name, args, place) | self._glob_reads(args, place), place

    def _nested_shell(self, script: Word, place: Place) -> Effect:
        if not script.static or self.shells >= _MAX_NESTED_SHELLS:
            raise Unknown("bash -c with a script we cannot read")
        return _Walker(self.shells + 1).source(script.text, place)

    def _glob_reads(self, words: Sequence[Word], place: Place) -> Effect:
        """Expanding a glob lists the directory it lives in."""
        b = Builder(place)
        for word in words:
            if word.glob:
                b.read(word, tree=True)
        return Effect(reads=frozenset(b.reads), outside=tuple(b.outside))

    def _redirect(self, node: Any, place: Place, depth: int) -> Effect:
        kind = node.type
        if kind in ("<<", "<<-"):
            return self._heredoc(node)
        target = node.output
        if not hasattr(target, "kind") or target.kind != "word":
            return Effect()  # 2>&1, <&3: duplicating a descriptor touches no file
        word, effect = self._word(target, place, depth)
        if kind == "<<<":
            return effect
        b = Builder(place)
        if kind in ("<", "<>"):
            b.read(word)
        if kind != "<":
            if kind in (">&", "<&") and word.static and (word.text.isdigit() or word.text == "-"):
                return effect  # duplicating or closing a descriptor
            b.write(word)
        written = b.effect(f"{kind} {word.text}")
        if kind in (">", ">|", "&>"):
            written = replace(written, truncates=written.writes)
        return effect | written

    def _heredoc(self, node: Any) -> Effect:
        body = getattr(getattr(node, "heredoc", None), "value", "") or ""
        if node.pos[0] not in self.literal_heredocs and ("$(" in body or "`" in body):
            raise Unknown("a heredoc body runs a command substitution")
        return Effect()


def _bindable(items: Sequence[Word]) -> bool:
    return all(not w.expands and not w.tilde for w in items)


def _reassigns(body: Sequence[Any], name: str) -> bool:
    """Does the loop body (maybe) set the loop variable itself (f=..., read f, export f)?"""
    for node in (n for part in body for n in _nodes(part)):
        text = getattr(node, "word", None)
        if node.kind in ("assignment", "word") and isinstance(text, str) and (
                text == name or text.split("=", 1)[0].rstrip("+") == name):
            return True
    return False


def _expand_bound(words: Sequence[Word], place: Place) -> list[Word]:
    """Replace $f by the items of an enclosing `for f in ...` loop."""
    out: list[Word] = []
    for word in words:
        items = place.bound(word.param) if word.param else None
        if items is None:
            out.append(word)
            continue
        if not word.quoted and any(w.glob or not w.static or re.search(r"[\s*?\[{]", w.text)
                                   for w in items):
            raise Unknown(f"unquoted {word.text} may split or glob")
        out.extend(items)
    return out


def _change_dir(args: list[Word], place: Place) -> Place:
    words = [w for w in args if not (w.static and w.text in ("-P", "-L", "-e", "-@", "--"))]
    if not words:
        return place.with_cwds((place.home,) if place.home else ())
    target = words[0]
    if len(words) > 1 or not target.exact or target.text == "-":
        return place.with_cwds(())
    try:
        return place.with_cwds(place.absolute(target.text))
    except Unknown:
        return place.with_cwds(())


def _check_assignments(texts: Sequence[str], *, standalone: bool) -> None:
    for text in texts:
        name = text.split("=", 1)[0].rstrip("+")
        if text.startswith("-"):
            raise Unknown(f"declaration option {text}")
        if standalone and _DANGEROUS_VARS.match(name):
            raise Unknown(f"setting {name} changes what later commands do")
        if not standalone and not _SAFE_PREFIX_VARS.match(name):
            raise Unknown(f"{name}=... may change what the command does")
