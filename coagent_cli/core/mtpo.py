"""MTPO: Monotonic Trajectory Pre-Order (see shared/DESIGN.md section 2).

The launch order is the serialization order. Reads are served the order-filtered
value; writes are applied in place at once, moving misplaced later writes out of the
way and back on top; later agents whose reads went stale are told, never blocked.
"""

from __future__ import annotations

from coagent_cli.core.engine import Engine, Sequence
from coagent_cli.core.ledger import OpRecord
from coagent_cli.core.model import Action


class MTPO(Engine):
    name = "mtpo"
    notifies = True

    def _admit(self, rec: OpRecord) -> list[Action] | None:
        return self._start(self._sequence_for(rec))

    def _sequence_for(self, rec: OpRecord) -> Sequence:
        spec, ledger = rec.spec, self.ledger
        if spec.servable:
            seq = self._plain_sequence(rec)  # served from stored versions: nothing moves
        elif self._can_shadow(rec):
            seq = self._plain_sequence(rec)
            seq.shadowed = True
        else:
            hidden = ledger.later_writers(spec.reads, rec.rank)
            misplaced = ledger.later_writers(spec.writes, rec.rank)
            seq = self._plain_sequence(rec, hidden | misplaced)
        return seq

    def _can_shadow(self, rec: OpRecord) -> bool:
        """A blind overwrite of one key that a later rank already overwrote needs no
        undo: the later value stays on top, ours is recorded beneath it."""
        spec = rec.spec
        if len(spec.writes) != 1 or spec.writes != spec.overwrites or spec.reads:
            return False
        (key,) = spec.writes
        if not key.is_concrete:
            return False
        later = [o for o in self.ledger.chains.get(key, ()) if self.ledger.ops[o].rank > rec.rank]
        return bool(later) and key in self.ledger.ops[later[0]].spec.overwrites
