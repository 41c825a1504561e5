"""`occ`: optimistic control with in-place writes and validation at finish.

Agents run freely; what each saw is recorded. When an agent finishes, and every
earlier agent has committed, its reads are validated against the launch order: if an
earlier agent changed something it read, its writes are undone through their
inverses and it restarts from scratch (the work is thrown away).

The live state cannot be forked, so writes are in place and may be seen by others.
Two rules keep that sound: touching a key on which a LATER agent's uncommitted write
is live aborts that later agent first (it would be misordered either way); and an
abort cascades to every agent whose writes sit on top of the aborted ones.
"""

from __future__ import annotations

from coagent_cli.core.engine import AgentState, Engine
from coagent_cli.core.ledger import OpRecord
from coagent_cli.core.model import Action


class Optimistic(Engine):
    name = "occ"

    def _admit(self, rec: OpRecord) -> list[Action] | None:
        spec = rec.spec
        later = self.ledger.later_writers(spec.reads | spec.writes, rec.rank)
        victims = {self.ledger.ops[o].agent for o in later}
        if victims:
            fresh = {v for v in victims if not self.agents[v].aborting}
            if fresh:
                self._emit(self._abort(fresh, "an earlier agent touched its writes"))
            return None
        return self._start(self._plain_sequence(rec))

    def _commit(self, a: AgentState) -> list[Action] | None:
        stale = self._stale_reads(a.name)
        return self._abort({a.name}, f"validation failed on {stale[0]}") if stale else None

    def _before_irreversible(self, rec: OpRecord) -> list[Action] | None:
        # Every earlier agent has committed, so validating now is final: an agent
        # whose reads are stale must restart before it does something for good.
        stale = self._stale_reads(rec.agent)
        if not stale:
            return None
        refused = self._refuse(rec, "aborted", "validation failed before an irreversible op")
        return refused + self._abort({rec.agent}, f"validation failed on {stale[0]}")

    def _stale_reads(self, agent: str) -> list[str]:
        return [str(k) for k in self.ledger.obs.get(agent, {}) if self.ledger.stale(agent, k)]
