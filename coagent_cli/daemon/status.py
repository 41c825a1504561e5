"""What status reports of the daemon's records: the line of each agent and the run's
totals in a `wire.Snapshot` (DaemonService.snapshot builds it; the monitor renders it).
"""

from __future__ import annotations

from typing import Collection

from coagent_cli.core.state import Stats
from coagent_cli.daemon import wire
from coagent_cli.daemon.records import TrackedAgent, TrackedOp

__all__ = ["agent_info", "run_totals"]


def agent_info(a: TrackedAgent, recent: list[TrackedOp]) -> wire.AgentInfo:
    """What the daemon knows of an agent (tokens and cost are the launcher's to know)."""
    mine = [o for o in recent if o.agent == a.name]
    busy = next((o for o in reversed(mine) if o.state in ("held", "running")), None)
    phase: wire.AgentPhase | None = {"finished": "finished", "crashed": "crashed",
                                     "waiting": "waiting"}.get(a.state)
    if phase is None and a.state == "running":
        phase = "executing" if busy is not None else "thinking"
    return wire.AgentInfo(name=a.name, rank=a.rank, state=a.state, ops=a.ops, steps=a.ops,
                          tokens=a.tokens, cost=a.cost, started_at=a.joined_at,
                          finished_at=a.finished_at if a.state == "finished" else None,
                          pending_notices=len(a.inbox), handled_notices=a.handled, phase=phase,
                          current=(busy or (mine[-1] if mine else None)).summary if mine else None)


def run_totals(s: Stats, agents: Collection[TrackedAgent]) -> wire.RunTotals:
    handled = sum(a.handled for a in agents)
    return wire.RunTotals(ops=s.executed, undos=s.undos, redos=s.redos, drops=s.drops,
                          served=s.served, notices=s.notices, notices_handled=handled,
                          tokens=sum(a.tokens for a in agents),
                          cost=sum(a.cost for a in agents))
