"""What the workspace executor journals about an op, so that a daemon restarted after a
crash can undo and redo ops the dead one performed (the `detail` of a journal op row).

    request      the shell line or tool call and its cwd: a redo may have to re-run it
    observed     the agent's merge base for each key it writes whole
    noted        what the op showed its agent of each file (a read's contribution to the
                 merge bases of the agent's later writes)
    applied      whether the op's writes are in the workspace now; ever_applied
    snap         shadow snapshots before and after its latest run (raw commands)
    tool         a tool run's exit status, params and captures (its inverse command
                 is rendered from them)

Pure conversions between those and JSON-ready data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from coagent_cli.core.keys import Key
from coagent_cli.core.model import Digest
from coagent_cli.errors import JournalError
from coagent_cli.executor.protocol import OpRequest, ShellCommand, ToolCall
from coagent_cli.workspace import Snapshot


def request_to_json(request: OpRequest) -> dict[str, Any]:
    action = request.action
    if isinstance(action, ShellCommand):
        return {"line": action.line, "cwd": str(action.cwd)}
    return {"tool": action.tool, "params": dict(action.params), "cwd": str(action.cwd)}


def request_from_json(op_id: int, agent: str, data: Mapping[str, Any]) -> OpRequest:
    try:
        cwd = Path(data["cwd"])
        if "line" in data:
            return OpRequest(op_id, agent, ShellCommand(str(data["line"]), cwd))
        return OpRequest(op_id, agent, ToolCall(str(data["tool"]), dict(data["params"]), cwd))
    except (KeyError, TypeError) as exc:
        raise JournalError(f"op {op_id}: the journaled request is malformed ({exc})") from exc


def digests_to_json(digests: Mapping[Key, Digest]) -> dict[str, Digest]:
    return {str(k): d for k, d in sorted(digests.items())}


def digests_from_json(data: Mapping[str, Any] | None) -> dict[Key, Digest]:
    return {Key.parse(k): str(d) for k, d in (data or {}).items()}


def snapshot_to_json(snap: Snapshot | None) -> dict[str, Any] | None:
    if snap is None:
        return None
    return {"tree": snap.tree, "gitdir": snap.gitdir, "opaque": list(snap.opaque)}


def snapshot_from_json(data: Mapping[str, Any] | None) -> Snapshot | None:
    if not data:
        return None
    return Snapshot(str(data["tree"]), str(data["gitdir"]), tuple(data.get("opaque", ())))
