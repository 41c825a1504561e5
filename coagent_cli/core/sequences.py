"""Planning a sequence: which ops move out of the way and back, and which keys it
latches. Plain functions of the ledger; the engine numbers sequences and runs them."""

from __future__ import annotations

from typing import Iterable

from coagent_cli.core.keys import any_conflict
from coagent_cli.core.ledger import Ledger, OpRecord
from coagent_cli.core.state import Reserved, Sequence


def plan_plain(ledger: Ledger, seq: Sequence, rec: OpRecord, undo: Iterable[int] = ()) -> Sequence:
    """The op's own effect, with `undo` (and all stacked on it) moved out of its way."""
    spec = rec.spec
    seq.execute = rec.op_id
    seq.serve = spec.servable
    undone = ledger.closure(undo)
    _plan_moves(ledger, seq, undone, undone)
    ops = [ledger.ops[o] for o in undone]
    seq.latch_r = spec.reads | frozenset(k for o in ops for k in o.spec.reads)
    seq.latch_w = spec.writes | frozenset(k for o in ops for k in o.written)
    return seq


def plan_removal(ledger: Ledger, seq: Sequence, remove: set[int]) -> Sequence:
    """Undo `remove` for good, moving whatever sits above them and re-applying it."""
    undone = ledger.closure(remove)
    ops = [ledger.ops[o] for o in undone]
    _plan_moves(ledger, seq, undone, undone - remove)
    seq.remove = set(remove)
    seq.latch_r = frozenset(k for o in ops for k in o.spec.reads)
    seq.latch_w = frozenset(k for o in ops for k in o.written)
    return seq


def _plan_moves(ledger: Ledger, seq: Sequence, undone: set[int], redo: set[int]) -> None:
    seq.undo = sorted(undone, key=lambda o: -ledger.ops[o].applied_at)
    seq.materialise = ledger.shadowed_beneath(undone)
    seq.redo = sorted(redo, key=lambda o: ledger.ops[o].order)


def latch_clash(seq: Sequence, running: Iterable[Sequence], reserved: Reserved, rank: int) -> bool:
    """Whether `seq` (of an agent of this rank) must wait for a latch held or reserved."""
    held = [(o.latch_r, o.latch_w) for o in running]
    if seq.execute is not None:  # undo-only sequences free keys: never hold them back
        held += [(r, w) for op, (r_rank, r, w) in reserved.items()
                 if r_rank < rank and op != seq.owner]
    return any(any_conflict(seq.latch_w, r | w) or any_conflict(seq.latch_r, w) for r, w in held)
