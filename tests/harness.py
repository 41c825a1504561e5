"""A synchronous driver for named scenarios: events in the order a test chooses,
effects performed at once on the in-memory environment."""

from __future__ import annotations

from coagent_cli.core import make_controller
from coagent_cli.core.model import (
    Action,
    AgentFinished,
    AgentRegistered,
    Event,
    Execute,
    NoticesTaken,
    Notify,
    OpExecuted,
    OpRedone,
    OpRequested,
    OpUndone,
    Redo,
    ServeRead,
    Undo,
)
from coagent_cli.sim.env import MemoryEnv, PendingOp
from coagent_cli.sim.program import OpStep, spec_for


class Harness:
    def __init__(self, controller: str, agents: list[str], initial: dict[str, str] | None = None) -> None:
        self.core = make_controller(controller)
        self.env = MemoryEnv(initial)
        self.log: list[Action] = []
        self._next = 0
        for rank, agent in enumerate(agents):
            self.feed(AgentRegistered(agent, rank))

    def feed(self, event: Event) -> list[Action]:
        """Feed one event and perform every effect it leads to; returns all actions."""
        start = len(self.log)
        pending = list(self.core.handle(event))
        while pending:
            action = pending.pop(0)
            self.log.append(action)
            pending.extend(self._perform(action))
        return self.log[start:]

    def _perform(self, a: Action) -> list[Action]:
        if isinstance(a, Execute):
            return self.core.handle(OpExecuted(a.op_id, self.env.execute(a.op_id, shadowed=a.shadowed)))
        if isinstance(a, ServeRead):
            self.env.serve(a.op_id, a.sources)
            return self.core.handle(OpExecuted(a.op_id, {}))
        if isinstance(a, Undo):
            self.env.undo(a.op_id)
            return self.core.handle(OpUndone(a.op_id))
        if isinstance(a, Redo):
            ok, writes = self.env.redo(a.op_id, base_changed=a.base_changed)
            return self.core.handle(OpRedone(a.op_id, ok, writes))
        return []

    def op(self, agent: str, step: OpStep) -> int:
        """Request one op for an agent; returns its id."""
        self._next += 1
        self.env.ops[self._next] = PendingOp(step, agent, self._next, {})
        self.feed(OpRequested(spec_for(step, self._next, agent)))
        return self._next

    def finish(self, agent: str) -> list[Action]:
        return self.feed(AgentFinished(agent))

    def take(self, agent: str) -> list:
        notices = [a.notice for a in self.log if isinstance(a, Notify) and a.notice.agent == agent]
        self.feed(NoticesTaken(agent, tuple(n.notice_id for n in notices)))
        return notices

    def seen(self, op_id: int, key: str) -> object:
        return self.env.results[op_id].seen[key]

    def notices(self, agent: str | None = None) -> list:
        return [a.notice for a in self.log if isinstance(a, Notify) and (agent is None or a.notice.agent == agent)]

    def kinds(self, since: int = 0) -> list[str]:
        return [type(a).__name__ for a in self.log[since:]]
