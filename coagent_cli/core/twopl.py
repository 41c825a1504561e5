"""`2pl`: strict two-phase locking on footprint keys.

Reads take shared locks, writes exclusive ones, held until the agent commits. To get
the launch order (not just some serial order), an agent commits only after every
earlier one has: locks are released in rank order. Deadlocks are prevented by
wound-wait with rank as age: an earlier agent that needs a lock held by a later one
wounds it (its writes are undone through their inverses and it restarts from
scratch); a later agent waits for an earlier one.
"""

from __future__ import annotations

from typing import Literal

from coagent_cli.core.engine import AgentState, Engine
from coagent_cli.core.keys import Key
from coagent_cli.core.ledger import OpRecord
from coagent_cli.core.model import Action

Mode = Literal["S", "X"]


class TwoPhaseLocking(Engine):
    name = "2pl"

    def __init__(self, **kw: bool) -> None:
        super().__init__(**kw)
        self.locks: dict[str, set[tuple[Mode, Key]]] = {}
        # Requests of agents still waiting: they queue ahead of any later agent, so
        # a wounded agent that restarts cannot grab the lock again first (livelock).
        self.wanted: dict[str, set[tuple[Mode, Key]]] = {}

    def _admit(self, rec: OpRecord) -> list[Action] | None:
        want = {("S", k) for k in rec.spec.reads} | {("X", k) for k in rec.spec.writes}
        holders = self._clashing(rec.agent, want, self.locks)
        younger = {h for h in holders if self.agents[h].rank > rec.rank}
        queued = {a for a in self._clashing(rec.agent, want, self.wanted) if self.agents[a].rank < rec.rank}
        if younger:
            self._wound(younger)
        if holders or queued:
            self.wanted[rec.agent] = want
            return None
        self.wanted.pop(rec.agent, None)
        self.locks.setdefault(rec.agent, set()).update(want)
        return self._start(self._plain_sequence(rec))

    def _clashing(self, agent: str, want: set[tuple[Mode, Key]],
                  table: dict[str, set[tuple[Mode, Key]]]) -> set[str]:
        return {other for other, held in table.items()
                if other != agent and any(_clash(w, h) for w in want for h in held)}

    def _wound(self, agents: set[str]) -> None:
        fresh = {a for a in agents if not self.agents[a].aborting}
        for a in fresh:
            self.wanted.pop(a, None)  # its queued op is turned away by the abort
        if fresh:
            self._emit(self._abort(fresh, "wounded by an earlier agent"))

    def _on_restarted(self, agent: AgentState) -> None:
        self.locks.pop(agent.name, None)
        self.wanted.pop(agent.name, None)

    def _commit(self, a: AgentState) -> list[Action] | None:
        self.locks.pop(a.name, None)
        return None


def _clash(a: tuple[Mode, Key], b: tuple[Mode, Key]) -> bool:
    return (a[0] == "X" or b[0] == "X") and a[1].conflicts(b[1])
