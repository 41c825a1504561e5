"""What a run reports: per agent, totals, wall time, controller; as JSON and as a table.

Time of a built-in agent splits into thinking (model turns, think time), waiting (for the
daemon to grant its ops) and executing (its command lines running). An external agent is
a black box: only its wall time is known, so thinking and waiting are None there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich import box
from rich.table import Table

__all__ = ["AgentReport", "RunReport", "report_table"]

AgentStatus = Literal["finished", "failed", "timed_out", "not_started"]


@dataclass
class AgentReport:
    name: str
    rank: int
    kind: Literal["builtin", "external"]
    status: AgentStatus = "not_started"
    reason: str | None = None          # one line, when the agent did not finish well
    steps: int = 0                     # model turns (built-in) or gated ops (external)
    ops: int = 0                       # ops the daemon admitted for it
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    notices: int = 0                   # notices the daemon sent it
    undone: int = 0                    # its ops undone (to reorder, or for an aborted run)
    redone: int = 0                    # its ops re-applied
    dropped: int = 0                   # its writes that could not be re-applied
    launches: int = 0                  # first run, resumes and restarts together
    resumes: int = 0
    restarts: int = 0
    thinking: float | None = None      # seconds
    waiting: float | None = None       # seconds waiting for grants
    executing: float | None = None     # seconds running command lines
    wall: float = 0.0                  # seconds from first launch to last stop

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def ok(self) -> bool:
        return self.status == "finished"


@dataclass
class RunReport:
    run_id: str
    workspace: str
    cc: str
    agents: list[AgentReport]
    wall_time: float = 0.0
    quiescent: bool = False
    time_limit_hit: bool = False
    daemon_failures: list[str] = field(default_factory=list)
    run_dir: str | None = None
    check: dict[str, Any] | None = None  # demo/bench: the final state against a serial run
    tools_forged: list[dict[str, Any]] = field(default_factory=list)  # the ToolSmith's outcomes

    @property
    def ok(self) -> bool:
        return self.quiescent and all(a.ok for a in self.agents) and not self.daemon_failures

    def totals(self) -> dict[str, Any]:
        costs = [a.cost for a in self.agents if a.cost is not None]
        return {"ops": sum(a.ops for a in self.agents), "steps": sum(a.steps for a in self.agents),
                "tokens": sum(a.tokens for a in self.agents),
                "prompt_tokens": sum(a.prompt_tokens for a in self.agents),
                "completion_tokens": sum(a.completion_tokens for a in self.agents),
                "cost": sum(costs) if costs else None,
                "notices": sum(a.notices for a in self.agents),
                "undos": sum(a.undone for a in self.agents), "redos": sum(a.redone for a in self.agents),
                "drops": sum(a.dropped for a in self.agents),
                "resumes": sum(a.resumes for a in self.agents),
                "restarts": sum(a.restarts for a in self.agents)}

    def failure_lines(self) -> list[str]:
        """One line per agent that did not finish well, and why the run is not clean."""
        lines = [f"{a.name}: {a.status}" + (f": {a.reason}" if a.reason else "")
                 for a in self.agents if not a.ok]
        lines += [f"daemon: {f}" for f in self.daemon_failures]
        if not self.quiescent and not lines:
            lines.append("the run did not reach quiescence (notices or repairs outstanding)")
        return lines

    def to_json(self) -> dict[str, Any]:
        agents = [{**asdict(a), "tokens": a.tokens} for a in self.agents]
        return {"run_id": self.run_id, "workspace": self.workspace, "controller": self.cc,
                "ok": self.ok, "quiescent": self.quiescent, "time_limit_hit": self.time_limit_hit,
                "wall_time": round(self.wall_time, 3), "agents": agents, "totals": self.totals(),
                "failures": self.failure_lines(), "daemon_failures": self.daemon_failures,
                "run_dir": self.run_dir, "check": self.check, "tools_forged": self.tools_forged}

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n", encoding="utf-8")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def report_table(report: RunReport, title: str | None = None) -> Table:
    # Compact: the table must fit an 80-column CI log.
    table = Table(title=title or f"coagent run {report.run_id} ({report.cc})", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("#", "agent", "status", "steps", "tokens", "notices", "undone", "redone",
                   "think", "wait", "wall"):
        table.add_column(column, justify="left" if column in ("agent", "status") else "right", no_wrap=True)
    for a in report.agents:
        table.add_row(str(a.rank), a.name, a.status, str(a.steps), str(a.tokens), str(a.notices),
                      str(a.undone), str(a.redone), _seconds(a.thinking), _seconds(a.waiting),
                      _seconds(a.wall))
    t = report.totals()
    table.add_row("", "total", "ok" if report.ok else "NOT OK", str(t["steps"]), str(t["tokens"]),
                  str(t["notices"]), str(t["undos"]), str(t["redos"]), "", "",
                  _seconds(report.wall_time), end_section=True)
    return table
