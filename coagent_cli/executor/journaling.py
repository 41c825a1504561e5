"""How the executor journals an op: effect intents, the op's images, its process group.

The op's `detail` is what a restarted executor needs to take it up again (see `adopt`).
"""

from __future__ import annotations

import json
from typing import Mapping

from coagent_cli.executor import persist
from coagent_cli.executor.process import start_time
from coagent_cli.executor.protocol import Footprint, OpRequest, ToolCall
from coagent_cli.executor.state import ExecutorState, OpState
from coagent_cli.journal import FileImage, OpRecord
from coagent_cli.workspace import Snapshot


class JournalingMixin(ExecutorState):
    def _begin(self, op: OpState, action: str, images: Mapping[str, FileImage], *,
               snapshot: Snapshot | None = None) -> int:
        """Journal the intent. A raw command's before-images are only known after it ran,
        so its pre-run snapshot is journaled with the intent, in the same transaction: a
        `snapshot` event naming the effect, with the keys the op may write. `coagent
        recover` reverts an effect cut off mid-run from it (daemon.run.recover)."""
        with self.journal.atomic():
            effect = self.journal.begin_effect(op.op_id, action, images)
            if snapshot is not None:
                self.journal.record("snapshot", pre_run_snapshot(effect, snapshot, op.footprint),
                                    agent=op.request.agent, op_id=op.op_id)
            return effect

    def _journal_op(self, op: OpState) -> None:
        """Record the op's images; the daemon's own fields (rank, state) are kept."""
        old = self.journal.op(op.op_id)
        fp = op.footprint
        self.journal.upsert_op(OpRecord(
            op_id=op.op_id, agent=op.request.agent, rank=old.rank if old else -1,
            label=old.label if old else _label(op.request),
            state=old.state if old else ("applied" if op.applied else "done"),
            reads=tuple(sorted(map(str, fp.reads))), writes=tuple(sorted(map(str, fp.writes))),
            before={p: b for p, (b, _) in op.changes.items()},
            after={p: a for p, (_, a) in op.changes.items()},
            detail=_detail(op),
        ))  # fmt: skip

    def _journal_process(self, op: OpState, pgid: int) -> None:
        """Name the command's process group in the journal before it can write much:
        if this process dies, `coagent recover` kills the group before reverting."""
        self.journal.record("process", {"pgid": pgid, "started": start_time(pgid)},
                            agent=op.request.agent, op_id=op.request.op_id)


def pre_run_snapshot(effect: int, snapshot: Snapshot, fp: Footprint) -> dict[str, object]:
    """The payload of a `snapshot` event: what recover needs to revert `effect`."""
    return {"effect": effect, "tree": snapshot.tree, "gitdir": snapshot.gitdir,
            "opaque": list(snapshot.opaque), "writes": sorted(map(str, fp.writes))}


def _detail(op: OpState) -> dict[str, object]:
    """What a restarted executor needs to take the op up again (see `persist`)."""
    result = op.tool_result
    return {
        "request": persist.request_to_json(op.request),
        "observed": persist.digests_to_json(op.observed),
        "noted": persist.digests_to_json(op.noted),
        "applied": op.applied, "ever_applied": op.ever_applied, "prepared": op.prepared,
        "snap": persist.snapshot_to_json(op.snap), "snap_after": persist.snapshot_to_json(op.snap_after),
        "tool": None if result is None else {"exit_status": result.exit_status, "command": result.command,
                                             "captures": dict(result.captures)},
    }  # fmt: skip


def _label(request: OpRequest) -> str:
    action = request.action
    if isinstance(action, ToolCall):
        return f"{action.tool} {json.dumps(dict(action.params), sort_keys=True, default=str)}"
    return action.line
