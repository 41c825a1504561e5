"""Taking a run up again after its daemon died: rebuild, then finish what was under way.

    rebuild             a fresh controller fed the journaled events (core.replay: it
                        checks each decision against the journaled one), and the
                        executor's ops taken up from their journaled detail
    finish_interrupted  the effects the dead daemon had started or was about to start:
                        an undo waiting for its redo is redone, a sequence cut in two
                        is carried to its end. Each is first looked up: an effect the
                        executor had finished (journaled with the op's state) is not
                        performed twice, only its completion is fed

`coagent recover` runs both offline, after it has reverted every effect left open, so
that the workspace holds every op the journal says is applied, in rank order. A daemon
started on a recovered run rebuilds the same way and goes on: earlier-ranked agents'
new ops are still slipped under later ones' old writes.

An op whose own run was cut off (the agent's command, or a tool call) cannot be
finished for its agent, who was never told it ran: it is completed as a no-op (its
partial writes were reverted) and reported, so that the agent runs it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from coagent_cli.core import make_controller
from coagent_cli.core import model as core
from coagent_cli.core.keys import Key
from coagent_cli.core.replay import Replay, replay
from coagent_cli.daemon.journaling import core_history, record_feed, wire_notice
from coagent_cli.errors import CoagentError, ExecutionError
from coagent_cli.executor.protocol import RedoResult
from coagent_cli.journal import Journal

__all__ = ["Resumed", "TakesUp", "finish_interrupted", "rebuild"]

MAX_EFFECTS = 100_000  # a bound on the loop; a sane run finishes in a few


class TakesUp(Protocol):
    """The executor, as resuming needs it (executor.workspace.WorkspaceExecutor)."""

    def adopt(self, records: Any) -> list[str]: ...
    def knows(self, op_id: int) -> bool: ...
    def applied(self, op_id: int) -> bool: ...
    def writes_of(self, op_id: int) -> dict[Key, core.Change]: ...
    def undo(self, op_id: int) -> None: ...
    def redo(self, op_id: int, base_changed: bool) -> RedoResult: ...
    def content(self, digest: str) -> bytes | None: ...


@dataclass
class Resumed:
    replay: Replay
    labels: dict[int, tuple[str, str]]   # op id -> (agent, label), from the journal
    problems: list[str] = field(default_factory=list)

    @property
    def core(self) -> Any:
        return self.replay.core


def rebuild(journal: Journal, cc: str, executor: TakesUp | None) -> Resumed | None:
    """The dead daemon's controller and executor state, from the journal; None for a
    journal written before core traffic was marked (it cannot be replayed). Raises
    ReplayDiverged when the journal does not rebuild its own decisions."""
    history = core_history(journal)
    if history is None:
        return None
    rebuilt = replay(make_controller(cc), history)
    labels = {e.op.op_id: (e.op.agent, e.op.label) for e, _ in history if isinstance(e, core.OpRequested)}
    # Only ops the ledger still holds can be undone or redone; collected ones belong to
    # agents settled for good, whose merge bases no longer matter.
    live = rebuilt.core.ledger.ops
    problems = executor.adopt([r for r in journal.ops() if r.op_id in live]) if executor is not None else []
    return Resumed(rebuilt, labels, problems)


def finish_interrupted(journal: Journal, resumed: Resumed, executor: TakesUp) -> list[str]:
    """Perform the effects under way, and every effect they lead to, journaling each
    event and decision as the daemon does. Returns what was done, a line each. An
    effect that cannot be performed stays pending (the next daemon tries it again)
    and its error is raised after what could be done is journaled."""
    lines: list[str] = []
    queue = list(resumed.replay.pending.values())
    for _ in range(MAX_EFFECTS):
        if not queue:
            return lines
        effect = queue.pop(0)
        done, extra, line = _complete(effect, resumed, executor)
        actions = resumed.replay.feed(done)
        notices = {a.notice.notice_id: wire_notice(a.notice, executor.content)
                   for a in actions if isinstance(a, core.Notify)}
        record_feed(journal, done, actions, extra=extra, notices=notices,
                    snapshot=resumed.core.snapshot(), next_op_id=int(journal.get_meta("next_op_id") or 0))
        if line:
            lines.append(line)
        queue.extend(a for a in actions if core.is_effect(a))
    raise ExecutionError(f"recovery did not settle within {MAX_EFFECTS} effects")


def _complete(effect: core.Action, resumed: Resumed, ex: TakesUp) -> tuple[core.Event, dict[str, Any], str]:
    op_id: int = effect.op_id  # type: ignore[attr-defined]
    agent, label = resumed.labels.get(op_id, ("?", f"op {op_id}"))
    name = f"op {op_id} of {agent} ({label})"
    known = ex.knows(op_id)
    if isinstance(effect, core.Execute):
        if known and (ex.applied(op_id) or effect.shadowed) and ex.writes_of(op_id):
            return (core.OpExecuted(op_id, ex.writes_of(op_id)), {"recovered": "had completed"},
                    f"{name}: its run had completed before the crash; kept")
        return (core.OpExecuted(op_id, {}), {"recovered": "rolled back", "abandoned": True},
                f"{name}: cut off by the crash and rolled back; {agent} must run it again")
    if isinstance(effect, core.ServeRead):
        return core.OpExecuted(op_id, {}), {"recovered": "abandoned", "abandoned": True}, ""
    if not known:
        raise ExecutionError(f"{name}: the journal holds no record to undo or redo it by")
    if isinstance(effect, core.Undo):
        if ex.applied(op_id):
            ex.undo(op_id)
        return core.OpUndone(op_id), {"recovered": "undone"}, ""
    assert isinstance(effect, core.Redo)
    if ex.applied(op_id):
        return (core.OpRedone(op_id, True, ex.writes_of(op_id)), {"recovered": "had completed"},
                f"{name}: its redo had completed before the crash")
    try:
        res = ex.redo(op_id, effect.base_changed)
    except CoagentError as exc:
        res = RedoResult(False, reason=str(exc))
    if not res.ok:
        return (core.OpRedone(op_id, False, {}, res.reason), {"recovered": "redo failed"},
                f"{name}: could not be redone ({res.reason}); dropped and its agent told")
    return (core.OpRedone(op_id, True, dict(res.writes)), {"recovered": "redone"},
            f"{name}: redone (it was undone when the daemon died)")
