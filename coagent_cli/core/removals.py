"""Taking ops back: an agent's retraction of its own ops, and the abort of whole
trajectories (undo their writes, then restart the agents from scratch).

`Removals` is mixed into `Engine` (a mixin, not helper functions: it reads and
changes most of the engine's state); besides the attributes declared below it uses
the engine's `_start`, `_wait`, `_emit`, `_refuse`, `_agent` and `_removal_sequence`.
"""

from __future__ import annotations

from typing import Iterable

from coagent_cli.core.ledger import Ledger
from coagent_cli.core.model import AbortAgent, Action, RestartAgent, RetractRequested, Wait
from coagent_cli.core.state import AgentState, Reserved, Sequence, Stats, Waiting
from coagent_cli.errors import ProtocolError


class Removals:
    ledger: Ledger
    agents: dict[str, AgentState]
    stats: Stats
    _by_op: dict[int, Sequence]
    _waiting: Waiting
    _reserved: Reserved
    _sid: int
    _kick: bool

    # -------------------------------------------------------------------- retract

    def _on_retract(self, ev: RetractRequested) -> list[Action]:
        a = self._agent(ev.agent)
        if a.in_flight is not None:
            raise ProtocolError(f"agent {a.name!r} cannot retract with op {a.in_flight} in flight")
        for o in ev.op_ids:
            rec = self.ledger.ops.get(o)
            if rec is None or rec.agent != ev.agent:
                raise ProtocolError(f"op {o} is not a live op of agent {ev.agent!r}")
        a.in_flight = ev.request_id
        retry = lambda: self._retract(ev)  # noqa: E731
        actions = retry()
        if actions is not None:
            return actions
        self._wait(ev.request_id, (a.rank, 0), retry)
        return [Wait(ev.request_id, "keys latched by another agent")]

    def _retract(self, ev: RetractRequested) -> list[Action] | None:
        recs = [self.ledger.ops[o] for o in ev.op_ids]
        seq = self._removal_sequence(ev.agent, {r.op_id for r in recs if r.writes})
        seq.owner = ev.request_id
        started = self._start(seq)
        if started is None:
            return None
        first = min((r.seq for r in recs), default=None)
        for r in recs:
            if not r.writes:
                r.state = "retracted"
        if first is not None:
            self.ledger.forget_from(ev.agent, first)
        self._agent(ev.agent).in_flight = None
        return started

    # ------------------------------------------------------------- abort / restart

    def _abort(self, agents: set[str], reason: str) -> list[Action]:
        """Discard these agents' trajectories (and of any agent whose writes sit on
        top of theirs): undo their writes, then restart them from scratch."""
        out: list[Action] = []
        for name in sorted(agents, key=lambda n: self.agents[n].rank):
            out.extend(self._mark_aborting(name, reason))
        self._sid += 1  # waits of aborts get negative ids: never an adapter's op id
        self._wait(-self._sid, (-1, 0), lambda: self._try_abort(set(agents)))
        self._kick = True
        return out

    def _mark_aborting(self, name: str, reason: str) -> list[Action]:
        a = self.agents[name]
        if a.aborting:
            return []
        a.aborting = True
        self.stats.aborts += 1
        return [AbortAgent(name, reason), *self._cancel_queued(a)]

    def _cancel_queued(self, a: AgentState) -> list[Action]:
        """An aborted agent's op that has not started yet is turned away."""
        op = a.in_flight
        if op is None or op not in self._waiting or op in self._by_op:
            return []
        del self._waiting[op]
        self._reserved.pop(op, None)
        if op in self.ledger.ops:
            return self._refuse(self.ledger.ops[op], "aborted", "the agent is being restarted")
        a.in_flight = None
        return []

    def _try_abort(self, agents: set[str]) -> list[Action] | None:
        if self._any_in_flight(agents):
            return None  # let their running op land first; it is undone with the rest
        while True:
            ops = {o for o, r in self.ledger.ops.items() if r.agent in agents and r.writes and r.state == "live"}
            above = {self.ledger.ops[o].agent for o in self.ledger.closure(ops)} - agents
            if not above:
                break
            for name in sorted(above, key=lambda n: self.agents[n].rank):  # replayable order
                self._emit(self._mark_aborting(name, "its writes sit on an aborted agent's writes"))
            agents |= above
            if self._any_in_flight(agents):
                return None
        seq = self._removal_sequence(min(agents, key=lambda n: self.agents[n].rank), ops)
        seq.restart = set(agents)
        return self._start(seq)

    def _any_in_flight(self, agents: set[str]) -> bool:
        return any(self.agents[n].in_flight is not None for n in agents)

    def _restart(self, agents: Iterable[str]) -> list[Action]:
        out: list[Action] = []
        for name in sorted(agents, key=lambda n: self.agents[n].rank):
            self._reset(self.agents[name])
            out.append(RestartAgent(name))
        return out

    def _reset(self, a: AgentState) -> None:
        """Forget the agent's finished ops and observations; it runs again from scratch."""
        for o, r in list(self.ledger.ops.items()):
            if r.agent == a.name and r.state in ("done", "retracted", "dropped"):
                del self.ledger.ops[o]
        self.ledger.forget_from(a.name, 0)
        a.aborting = False
        a.status = "running"
        a.inbox.clear()
        self.stats.restarts += 1
        self._on_restarted(a)

    def _on_restarted(self, agent: AgentState) -> None:
        """Policy hook (2PL releases the agent's locks here)."""
