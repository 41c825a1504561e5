"""Progress of a running sequence: the next effect to ask for, and what each reported
effect does to the ledger and the counters. Plain functions; the engine checks the
reports and routes them here."""

from __future__ import annotations

from coagent_cli.core.keys import Key
from coagent_cli.core.ledger import Ledger, OpRecord
from coagent_cli.core.model import Action, Change, Execute, Redo, ServeRead, Undo
from coagent_cli.core.state import Sequence, Stats


def next_effect(ledger: Ledger, seq: Sequence) -> Action | None:
    """Undo, materialise, execute (or serve), redo, in that order; None once all are done."""
    for step in (_next_undo, _next_materialise, _own_effect, _next_redo):
        action = step(ledger, seq)
        if action is not None:
            return action
    return None


def _next_undo(ledger: Ledger, seq: Sequence) -> Action | None:
    ops = ledger.ops
    while seq.undo:
        o = seq.undo.pop(0)
        if ops[o].applied:
            seq.current = o
            return Undo(o)
        ops[o].state = "undone"
        seq.bases[o] = base_under(ledger, ops[o])
        finish_undo(ledger, seq, ops[o])
    return None


def _next_materialise(ledger: Ledger, seq: Sequence) -> Action | None:
    if not seq.materialise:
        return None
    o = seq.materialise.pop(0)
    seq.current = o
    return Redo(o, base_changed=True)


def _own_effect(ledger: Ledger, seq: Sequence) -> Action | None:
    if seq.execute is None or seq.executed:
        return None
    seq.current = seq.execute
    rec = ledger.ops[seq.execute]
    rec.state = "running"
    if seq.serve:
        return ServeRead(rec.op_id, sources(ledger, rec))
    return Execute(rec.op_id, shadowed=seq.shadowed)


def _next_redo(ledger: Ledger, seq: Sequence) -> Action | None:
    ops = ledger.ops
    while seq.redo:
        o = seq.redo.pop(0)
        if o in seq.remove or ops[o].state == "dropped":
            continue
        seq.current = o
        base_changed = seq.bases.get(o) != base_under(ledger, ops[o])
        return Redo(o, base_changed=base_changed)
    return None


def base_under(ledger: Ledger, rec: OpRecord) -> dict[Key, str | None]:
    """The live values of everything the op reads or writes (it being undone)."""
    return {k: ledger.physical(k) for k in ledger.keys_touching(rec.spec.reads | rec.written)}


def sources(ledger: Ledger, rec: OpRecord) -> dict[Key, str]:
    """The order-filtered values a served read must see, where the live ones differ."""
    out: dict[Key, str] = {}
    for k in ledger.keys_touching(rec.spec.reads):
        want = ledger.visible(rec.agent, k, rec.seq)
        if want is not None and want != ledger.physical(k):
            out[k] = want
    return out


def record_executed(ledger: Ledger, stats: Stats, seq: Sequence, rec: OpRecord,
                    writes: dict[Key, Change]) -> None:
    # A tool that was to write but changed nothing (it failed, or found nothing to
    # change) told the agent something about what it read: that is an observation.
    ledger.observe(rec, also=rec.spec.reads if rec.spec.writes and not writes else ())
    if writes:
        ledger.insert(rec, writes)
        rec.state = "live"
        rec.applied = not seq.shadowed
        rec.applied_at = ledger.tick()
        seq.touched.update(writes)
    else:
        rec.state = "done"
    _count_executed(ledger, stats, seq)


def _count_executed(ledger: Ledger, stats: Stats, seq: Sequence) -> None:
    if seq.serve:
        stats.served += 1
    else:
        stats.executed += 1
    stats.shadowed += int(seq.shadowed)
    stats.peak_versions = max(stats.peak_versions, ledger.peak_versions)


def record_undone(ledger: Ledger, stats: Stats, seq: Sequence, rec: OpRecord) -> None:
    rec.applied = False
    rec.state = "undone"
    stats.undos += 1
    seq.bases[rec.op_id] = base_under(ledger, rec)
    finish_undo(ledger, seq, rec)


def finish_undo(ledger: Ledger, seq: Sequence, rec: OpRecord) -> None:
    if rec.op_id in seq.remove:
        rec.state = "retracted"
        seq.touched.update(rec.writes)
        ledger.remove(rec)


def record_redone(ledger: Ledger, stats: Stats, seq: Sequence, rec: OpRecord,
                  writes: dict[Key, Change]) -> None:
    old = {k: c.after for k, c in rec.writes.items()}
    new = {k: c.after for k, c in writes.items()}
    ledger.update_writes(rec, writes)
    rec.applied = True
    rec.state = "live"
    rec.applied_at = ledger.tick()
    stats.redos += 1
    if old != new:
        changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        seq.touched.update(changed)
        seq.reordered.setdefault(rec.op_id, old)


def record_dropped(ledger: Ledger, stats: Stats, seq: Sequence, rec: OpRecord) -> None:
    rec.state = "dropped"
    stats.drops += 1
    seq.dropped.add(rec.op_id)
    seq.touched.update(rec.writes)
    ledger.remove(rec)
