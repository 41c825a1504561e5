"""What the daemon keeps of each agent and each op of a run, and the pure helpers that
turn an agent's request into what the core and the wire need.

    TrackedAgent   one agent: its state, inbox, connections and usage
    TrackedOp      one op: its footprint, state, grant future and result
    op_spec        the core's OpSpec of an op, from its footprint
    op_summary     a one-line label of a shell line or tool call (capped)
    wire_status    an exit status as the wire carries it (0..255)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from coagent_cli.core import model as core
from coagent_cli.daemon import wire
from coagent_cli.daemon.transport import Connection
from coagent_cli.executor.protocol import Footprint, RunResult, ShellCommand, ToolCall

__all__ = ["TrackedAgent", "TrackedOp", "op_spec", "op_summary", "wire_status"]


@dataclass
class TrackedAgent:
    name: str
    rank: int
    token: str
    state: wire.AgentState = "registered"
    ops: int = 0
    inbox: dict[int, wire.Notice] = field(default_factory=dict)
    handled: int = 0                    # notices delivered (taken from the inbox)
    tokens: int = 0                     # model usage the agent reported
    cost: float = 0.0
    joined_at: float | None = None      # first hello (the monitor's per-agent time)
    finished_at: float | None = None
    conns: set[Connection] = field(default_factory=set)
    orphan_timer: asyncio.Task[None] | None = None


@dataclass
class TrackedOp:
    op_id: int
    agent: str
    summary: str
    kind: str                           # shell | tool
    reads: list[str]
    writes: list[str]
    state: wire.OpState = "held"
    granted: asyncio.Future[wire.OpGranted] | None = None
    result: RunResult | None = None
    reply: wire.OpAction = "served"     # how the grant reads when the daemon performed it
    running: bool = False               # granted `run`, end_op not yet received
    orphan: bool = False                # nobody waits for the grant any more


def op_spec(op_id: int, agent: str, fp: Footprint, label: str) -> core.OpSpec:
    return core.OpSpec(op_id=op_id, agent=agent, reads=fp.reads, writes=fp.writes,
                       observes=fp.observes, overwrites=fp.overwrites, reversible=fp.reversible,
                       servable=fp.servable, label=label)


def op_summary(action: ShellCommand | ToolCall) -> str:
    if isinstance(action, ShellCommand):
        text = action.line
    else:
        args = ", ".join(f"{k}={v!r}" for k, v in action.params.items())
        text = f"{action.tool}({args})"
    return text if len(text) <= 200 else text[:197] + "..."


def wire_status(code: int) -> int:
    return code if 0 <= code <= 255 else 255
