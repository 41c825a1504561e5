"""The core's traffic in the run journal, written so that it can be read back.

Every event the daemon feeds its controller is journaled with every action it got back,
in one transaction, before any of them is acted on (DaemonService._feed). The rows are
marked `core: event` / `core: action` in their payload, so that after a crash the
controller can be rebuilt from them (core.replay) rather than started afresh:

    record_feed    one event, its actions, the core's snapshot, in one transaction
    core_history   the journaled (event, actions) pairs, in order, for core.replay
    wire_notice    a core notice as agents receive it, with its capped diff

Blocking (SQLite): called from worker threads or offline (recover).
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping

from coagent_cli.core import model as core
from coagent_cli.core.replay import event_from_json, kind_of, to_json
from coagent_cli.daemon import wire
from coagent_cli.errors import CoagentError
from coagent_cli.journal import Journal

__all__ = ["CORE", "DIFF_CAP", "core_history", "record_feed", "unified_diff", "wire_notice"]

CORE = "core"  # the payload field that marks core traffic
DIFF_CAP = 8 * 1024
_ACTION_EXTRAS = (CORE, "diff")  # payload fields of an action row that are not the action


def record_feed(journal: Journal, event: core.Event, actions: list[core.Action], *,
                extra: Mapping[str, Any], notices: Mapping[int, wire.Notice],
                snapshot: dict[str, Any], next_op_id: int) -> None:
    """Journal one fed event and its actions (a notice with its diff) in one transaction."""
    with journal.atomic():
        _record(journal, event, {**extra, CORE: "event"})
        for a in actions:
            more: dict[str, Any] = {CORE: "action"}
            if isinstance(a, core.Notify):
                more["diff"] = notices[a.notice.notice_id].diff
            _record(journal, a, more)
        journal.set_meta("core", snapshot)
        journal.set_meta("next_op_id", next_op_id)


def core_history(journal: Journal) -> list[tuple[core.Event, list[dict[str, Any]]]] | None:
    """The journaled core events with their journaled actions, in feeding order; None
    when the journal holds unmarked core traffic (written before it was marked), which
    cannot be replayed."""
    history: list[tuple[core.Event, list[dict[str, Any]]]] = []
    for row in journal.timeline():
        mark = row.payload.get(CORE)
        if mark == "event":
            history.append((event_from_json(row.kind, row.payload), []))
        elif mark == "action" and history:
            action = {k: v for k, v in row.payload.items() if k not in _ACTION_EXTRAS}
            history[-1][1].append({"kind": row.kind, **action})
        elif row.kind == "op_requested":
            return None  # an unmarked core event: an older journal
    return history


def wire_notice(n: core.Notice, content: Callable[[str], bytes | None]) -> wire.Notice:
    """A core notice as its agent receives it; `content` reads a stored version."""
    return wire.Notice(id=n.notice_id, key=str(n.key), kind=n.kind, by=n.by, detail=n.detail,
                       diff=_diff(n, content), steps=[s for s in n.steps if s >= 1])


def _diff(n: core.Notice, content: Callable[[str], bytes | None]) -> str | None:
    if n.key.scheme != "file":
        return None
    try:
        old = content(n.old) if n.old else b""
        new = content(n.new) if n.new else b""
    except CoagentError:
        return None
    return unified_diff(old or b"", new or b"", n.key.name)


def unified_diff(old: bytes, new: bytes, path: str, cap: int = DIFF_CAP) -> str | None:
    """The change from old to new as a unified diff, capped at `cap` bytes; None for
    content that is not UTF-8 text."""
    try:
        a, b = old.decode(), new.decode()
    except UnicodeDecodeError:
        return None
    lines = difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True),
                                 f"a/{path}", f"b/{path}")
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)
    if len(text.encode()) <= cap:
        return text
    cut = text.encode()[:cap].decode(errors="ignore")
    return cut[: cut.rfind("\n") + 1] + f"... (diff truncated at {cap} bytes)\n"


def _record(journal: Journal, item: Any, extra: dict[str, Any]) -> None:
    payload = to_json(item)
    spec = getattr(item, "op", None)
    notice = getattr(item, "notice", None)
    agent = getattr(item, "agent", None) or getattr(spec, "agent", None) or getattr(notice, "agent", None)
    op_id = getattr(item, "op_id", None) or getattr(spec, "op_id", None)
    payload.update({k: v for k, v in extra.items() if v is not None})
    journal.record(kind_of(item), payload, agent=agent if isinstance(agent, str) else None,
                   op_id=op_id if isinstance(op_id, int) else None)
