"""Reading the raw command lines agents ran out of a run journal.

A sample is a shell op whose footprint was `*` (the classifier could not say what it
touches), that ran at the workspace root, exited 0, changed something, and is a simple
command: words only, no pipes, redirections, lists, expansions or globs (the matcher
lifts only those). Its writes are the paths the executor saw it change (the op's images);
its full line and cwd come from the op's journaled request.
"""

from __future__ import annotations

import posixpath
import shlex
from pathlib import Path

from coagent_cli.journal import Journal
from toolsmith.generalise import Sample

__all__ = ["samples_from_journal", "simple_argv"]

_SPECIAL = set("|&;<>()$`*?[]{}\\\n")


def samples_from_journal(journal: Journal, workspace: Path) -> list[Sample]:
    workspace = Path(workspace).resolve()
    raw, ok = _raw_and_ok(journal)
    out = []
    for rec in journal.ops():
        request = rec.detail.get("request") or {}
        line = request.get("line")
        if not isinstance(line, str) or rec.op_id not in raw or rec.op_id not in ok:
            continue
        if Path(str(request.get("cwd", ""))).resolve() != workspace:
            continue
        argv = simple_argv(line)
        writes = frozenset(rec.after) | frozenset(rec.before)
        if argv is None or not writes:
            continue
        existing = frozenset(w for w in argv[1:] if _exists(workspace, w))
        dirs = frozenset(w for w in existing if (workspace / _inside(w)).is_dir())
        out.append(Sample(rec.op_id, rec.agent, line, argv, writes, existing, dirs))
    return out


def _raw_and_ok(journal: Journal) -> tuple[set[int], set[int]]:
    """Ops requested with a `*` footprint; ops that exited 0."""
    raw, ok = set(), set()
    for e in journal.timeline():
        if e.payload.get("core") != "event" or e.op_id is None:
            continue
        if e.kind == "op_requested" and "*" in e.payload.get("op", {}).get("writes", ()):
            raw.add(e.op_id)
        elif e.kind == "op_executed" and e.payload.get("exit_status") == 0:
            ok.add(e.op_id)
    return raw, ok


def simple_argv(line: str) -> tuple[str, ...] | None:
    """The words of a simple command, or None when the line is anything more."""
    if any(c in _SPECIAL for c in line.replace("'", "").replace('"', "")):
        return None
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if not words or "=" in words[0]:  # `X=1 cmd`: an assignment prefix
        return None
    return tuple(words)


def _inside(word: str) -> str:
    return posixpath.normpath(word).removeprefix("./")


def _exists(workspace: Path, word: str) -> bool:
    rel = _inside(word)
    if not rel or rel == "." or rel.startswith(("/", "../")) or rel == "..":
        return False
    try:
        return (workspace / rel).exists()
    except OSError:
        return False
