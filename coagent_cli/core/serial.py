"""`serial`: one agent after another in rank order. The correctness oracle's schedule,
and the time baseline MTPO is measured against."""

from __future__ import annotations

from coagent_cli.core.engine import AgentState, Engine
from coagent_cli.core.ledger import OpRecord
from coagent_cli.core.model import Action


class Serial(Engine):
    name = "serial"

    def _may_start(self, agent: AgentState) -> bool:
        return self._earlier_settled(agent.rank)

    def _admit(self, rec: OpRecord) -> list[Action] | None:
        return self._start(self._plain_sequence(rec))
