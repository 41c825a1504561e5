"""Taking up, after a restart, the ops a dead executor journaled (their `detail`)."""

from __future__ import annotations

from typing import Iterable

from coagent_cli.errors import CoagentError
from coagent_cli.executor import persist
from coagent_cli.executor.footprints import file_paths, resolve
from coagent_cli.executor.seen import SeenMixin
from coagent_cli.executor.state import OpState
from coagent_cli.journal import OpRecord
from coagent_cli.tools import ToolResult
from coagent_cli.tools import render


class AdoptMixin(SeenMixin):
    def adopt(self, records: Iterable[OpRecord]) -> list[str]:
        """After a restart: take up the ops a dead executor journaled (their `detail`),
        so that undoing and redoing them works here as it did there, and rebuild what
        each agent had seen. Returns one line per op it could not take up."""
        problems = []
        for rec in sorted(records, key=lambda r: r.op_id):
            if not rec.detail.get("request"):
                continue  # journaled before details were: nothing to take up
            try:
                op = self._adopted(rec)
            except CoagentError as exc:
                problems.append(f"op {rec.op_id} ({rec.label}): {exc.message}")
                continue
            with self._lock:
                self._ops[op.op_id] = op
                self._seen.setdefault(op.request.agent, {}).update(op.noted)
            self._note_writes(op)
        return problems

    def _adopted(self, rec: OpRecord) -> OpState:
        d = rec.detail
        request = persist.request_from_json(rec.op_id, rec.agent, d["request"])
        resolved = resolve(request, self.workspace, self.library)
        op = OpState(request, resolved, persist.digests_from_json(d.get("observed")))
        op.changes = {p: (rec.before[p], rec.after[p]) for p in rec.after if p in rec.before}
        declared = set(file_paths(resolved.footprint.writes))
        op.before = {p: pair[0] for p, pair in op.changes.items() if p in declared}
        op.noted = persist.digests_from_json(d.get("noted"))
        op.snap = persist.snapshot_from_json(d.get("snap"))
        op.snap_after = persist.snapshot_from_json(d.get("snap_after"))
        op.prepared, op.applied = bool(d.get("prepared")), bool(d.get("applied"))
        op.ever_applied = bool(d.get("ever_applied"))
        ran = d.get("tool")
        if ran is not None and resolved.tool is not None:
            root = render.workspace_root(self.workspace)
            bound = render.bind_params(resolved.tool, resolved.params or {}, root)
            op.tool_result = ToolResult(resolved.tool, bound, root, resolved.footprint.reads,
                                        resolved.footprint.writes, int(ran["exit_status"]), "",
                                        ran.get("command"), dict(ran.get("captures") or {}))
        return op
