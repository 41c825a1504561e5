"""`none`: no concurrency control at all. Fast, and wrong under contention: the
property tests show it losing updates, so that the oracle is known to bite."""

from __future__ import annotations

from coagent_cli.core.engine import Engine
from coagent_cli.core.ledger import OpRecord
from coagent_cli.core.model import Action


class NoControl(Engine):
    name = "none"
    latching = False
    holds_irreversible = False

    def _admit(self, rec: OpRecord) -> list[Action] | None:
        return self._start(self._plain_sequence(rec))

    def _ready_to_settle(self, a) -> bool:  # type: ignore[no-untyped-def]
        # Its ledger order means nothing (writes land in arrival order), so it keeps
        # no history to collect; agents simply finish.
        return a.status == "finished" and a.in_flight is None
