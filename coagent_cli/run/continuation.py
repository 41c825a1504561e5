"""Continuing a recovered run: what each agent had done before the crash.

`coagent run` on a workspace whose last run was recovered (`coagent recover` after a
crash) continues that run: same agents, same order, the daemon's controller rebuilt
from the journal. Its agents are not started afresh, which would do their work twice:

  - a built-in agent gets its conversation back from the previous run's trajectory, a
    result for every tool call the crash left unanswered (whether the journal says it
    took effect), and a note naming the step that was rolled back, if any;
  - the scripted model skips the script steps whose ops stand (`ScriptedModel.take_up`);
  - an agent the daemon holds finished is not launched again (unless notices wait);
  - an external agent is launched again with COAGENT_CONTINUED=1 (it must know where it
    was: `coagent inbox` and the workspace tell it what stands).

Read from the journal (blocking SQLite) and the trajectory files; nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coagent_cli.agents.loop import TakenUp
from coagent_cli.agents.models import Message
from coagent_cli.journal import Journal

__all__ = ["AgentHistory", "load_histories", "RUN_DIR_META"]

RUN_DIR_META = "launcher_run_dir"  # journal meta: the run directory of the launcher that ran it


@dataclass
class AgentHistory:
    agent: str
    ops: list[int] = field(default_factory=list)  # its ops that stand, in order
    rolled_back: list[str] = field(default_factory=list)  # labels of writing steps the crash rolled back
    rolled_back_ops: list[int] = field(default_factory=list)  # every op of it recover rolled back
    messages: list[Message] | None = None  # its conversation, repaired; None: none recorded
    events: list[dict[str, Any]] = field(default_factory=list)  # its trajectory before the crash
    steps: int = 0  # model turns taken before the crash

    def taken_up(self) -> TakenUp | None:
        """What the agent loop takes up; None when no conversation was recorded (the
        agent then starts from its task, told of the crash)."""
        if self.messages is None:
            return None
        return TakenUp(self.messages, self.events, self.steps, tuple(self.ops),
                       tuple(self.rolled_back_ops), self.note())

    def note(self) -> str:
        """What the agent is told when it is taken up again."""
        lines = ["coagent: this run was interrupted (its daemon died) and recovered. "
                 "Every step you took before stands, except as said here."]
        for label in self.rolled_back:
            lines.append(f"- `{label}` was cut off and rolled back: it did NOT take effect. "
                         "Run it again if it is still needed.")
        lines.append("Check the workspace if in doubt, then go on with your task.")
        return "\n".join(lines)


def load_histories(journal: Journal, agents: list[str]) -> dict[str, AgentHistory]:
    """Each agent's standing ops, rolled-back steps and (built-in agents) conversation."""
    histories = {a: AgentHistory(a) for a in agents}
    requested: dict[int, tuple[str, str, bool]] = {}  # op -> agent, label, whether it writes
    gone: set[int] = set()       # retracted, or rolled back by recover
    executed: set[int] = set()
    for e in journal.timeline():
        p = e.payload
        if e.kind == "op_requested" and p.get("core") == "event":
            op = p.get("op", {})
            requested[int(op["op_id"])] = (str(op["agent"]), str(op.get("label", "")), bool(op.get("writes")))
        elif e.kind == "op_executed" and p.get("core") == "event" and e.op_id is not None:
            executed.add(e.op_id)
            if p.get("recovered") == "rolled back":
                gone.add(e.op_id)
                agent, label, writes = requested.get(e.op_id, ("", "", False))
                if agent in histories:
                    histories[agent].rolled_back_ops.append(e.op_id)
                    if writes:  # a rolled-back read lost nothing worth a line
                        histories[agent].rolled_back.append(label)
        elif e.kind == "retract_requested" and p.get("core") == "event":
            gone.update(int(o) for o in p.get("op_ids", []))
    for op_id, (agent, _, _) in sorted(requested.items()):
        if agent in histories and op_id in executed and op_id not in gone:
            histories[agent].ops.append(op_id)
    run_dir = journal.get_meta(RUN_DIR_META)
    if run_dir:
        for history in histories.values():
            _conversation(history, Path(run_dir))
    return histories


def _conversation(history: AgentHistory, run_dir: Path) -> None:
    events = _trajectory(run_dir / f"{history.agent}.jsonl")
    messages = [e["message"] for e in events if e.get("event") == "message" and isinstance(e.get("message"), dict)]
    if not events or not messages:
        return
    history.events = events
    history.steps = sum(1 for m in messages if m.get("role") == "assistant")
    known = {e.get("op_id") for e in events if e.get("event") == "message" and e.get("op_id") is not None}
    took_effect = [o for o in history.ops if o not in known]  # its result line never got written
    history.messages = _answer_dangling(messages, bool(took_effect))


def _trajectory(path: Path) -> list[dict[str, Any]]:
    """The trajectory's events; a last line the crash tore is left out. An unreadable
    file, or a bad line before the last, gives nothing (the agent starts from its task)."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return []
    events = []
    for i, line in enumerate(lines):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            return events if i == len(lines) - 1 else []
    return events


def _answer_dangling(messages: list[Message], took_effect: bool) -> list[Message]:
    """Every assistant tool call needs a tool result before the next request: the crash
    may have cut a reply's calls short. Their result now says what the journal knows:
    whether an op of the agent stands that no recorded result accounts for."""
    answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    out: list[Message] = []
    for m in messages:
        out.append(m)
        calls = (m.get("tool_calls") or []) if m.get("role") == "assistant" else []
        for call in calls:
            if call.get("id") not in answered:
                verdict = ("it DID take effect" if took_effect else
                           "it did NOT take effect (rolled back, or never run)")
                out.append({"role": "tool", "tool_call_id": call.get("id"),
                            "content": f"coagent: the run crashed while this call ran; its output is lost; "
                                       f"{verdict}."})
    return out
