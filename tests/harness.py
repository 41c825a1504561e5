"""A synchronous driver for named scenarios: events in the order a test chooses,
effects performed at once on the in-memory environment."""

from __future__ import annotations

from coagent_cli.core import make_controller
from coagent_cli.core.driver import drain
from coagent_cli.core.model import (
    Action,
    AgentFinished,
    AgentRegistered,
    Event,
    NoticesTaken,
    Notify,
    OpRequested,
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

        def record(action: Action) -> list[Event]:
            self.log.append(action)
            return []

        drain(self.core, self.core.handle(event), self.env, react=record)
        return self.log[start:]

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
