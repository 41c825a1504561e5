"""After every change: retry queued requests, settle agents in rank order (folding
their history into the base), start agents, and report quiescence.

`Settling` is mixed into `Engine` (a mixin: it drives the engine's queue and agents);
besides the attributes declared below it uses the engine's `_by_rank`,
`_start_agents` and `quiescent`. Controllers override `_ready_to_settle`, `_commit`
and `_on_finished`.
"""

from __future__ import annotations

from coagent_cli.core.ledger import Ledger
from coagent_cli.core.model import Action, AgentSettled, Quiescent
from coagent_cli.core.state import AgentState, Sequence, Stats, Waiting


class Settling:
    ledger: Ledger
    agents: dict[str, AgentState]
    stats: Stats
    collect_versions: bool
    _sequences: dict[int, Sequence]
    _waiting: Waiting
    _was_quiescent: bool
    _retrying: bool
    _again: bool

    def _after_change(self) -> list[Action]:
        out = self._retry_waiting()
        out.extend(self._settle())
        out.extend(self._start_agents())
        if out:
            out.extend(self._retry_waiting())
        return out

    def _retry_waiting(self) -> list[Action]:
        """Retry queued requests in (rank, seq) order until none can move. Re-entrant
        calls (a retry that finishes a sequence) only ask the outer loop to go again."""
        if self._retrying:
            self._again = True
            return []
        self._retrying, out = True, []
        try:
            self._again = True
            while self._again:
                self._again = False
                out.extend(self._retry_pass())
        finally:
            self._retrying = False
        return out

    def _retry_pass(self) -> list[Action]:
        """One pass over the queue; any request that moves asks for another pass."""
        out: list[Action] = []
        for wid, (order, retry) in sorted(self._waiting.items(), key=lambda x: x[1][0]):
            if wid not in self._waiting:
                continue
            del self._waiting[wid]
            actions = retry()
            if actions is None:
                self._waiting[wid] = (order, retry)
            else:
                out.extend(actions)
                self._again = True
        return out

    def _settle(self) -> list[Action]:
        out: list[Action] = []
        for a in self._by_rank():
            if a.status == "settled":
                continue
            if not self._ready_to_settle(a):
                break
            verdict = self._commit(a)
            if verdict is not None:
                out.extend(verdict)
                break
            out.append(self._mark_settled(a))
        return out

    def _mark_settled(self, a: AgentState) -> AgentSettled:
        a.status = "settled"
        if self.collect_versions:
            self.stats.collected += self.ledger.collect(a.rank)
        return AgentSettled(a.name)

    def _ready_to_settle(self, a: AgentState) -> bool:
        if a.status != "finished" or a.inbox or a.in_flight is not None or a.aborting:
            return False
        return not any(
            self.ledger.ops[o].rank <= a.rank for s in self._sequences.values() for o in s.members
            if o in self.ledger.ops
        )

    def _commit(self, a: AgentState) -> list[Action] | None:
        """Policy hook: None to settle the agent, or actions (e.g. an abort) instead."""
        return None

    def _earlier_settled(self, rank: int) -> bool:
        return all(a.status == "settled" for a in self.agents.values() if a.rank < rank)

    def _check_quiescence(self) -> list[Action]:
        q = self.quiescent
        fire = q and not self._was_quiescent
        self._was_quiescent = q
        return [Quiescent()] if fire else []

    def _on_finished(self, a: AgentState) -> list[Action]:
        return []
