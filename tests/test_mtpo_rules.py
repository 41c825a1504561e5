"""Each MTPO rule of DESIGN.md section 2 as a small named scenario on real effects
(the in-memory environment checks every undo against the live value)."""

import pytest

from coagent_cli.core.keys import Key
from coagent_cli.core.model import (
    AgentFinished,
    Completed,
    Drop,
    Execute,
    Hold,
    OpRequested,
    OpSpec,
    Quiescent,
    Redo,
    ResumeAgent,
    ServeRead,
    Undo,
)
from coagent_cli.errors import ProtocolError
from coagent_cli.sim.env import digest
from coagent_cli.sim.program import Append, Emit, Read, Replace, Write

from harness import Harness

F = "file:src/app.py"
BASE = {F: "base"}


def test_stale_read_is_noticed_by_the_later_reader() -> None:
    h = Harness("mtpo", ["alice", "bob"], BASE)
    read = h.op("bob", Read((F,)))
    h.op("alice", Append(F, "+a"))
    [notice] = h.notices("bob")
    assert (notice.kind, str(notice.key), notice.by, notice.steps) == ("stale_read", F, "alice", (read,))
    assert notice.old == digest("base") and notice.new == digest("base+a")
    assert h.notices("alice") == []  # notices flow only to later ranks


def test_lazy_notification_skips_a_write_that_changes_nothing() -> None:
    h = Harness("mtpo", ["alice", "bob"], BASE)
    h.op("bob", Read((F,)))
    h.op("alice", Replace(F, "base", "base"))  # same bytes after
    assert h.notices("bob") == []


def test_misplaced_write_is_undone_applied_under_and_redone() -> None:
    h = Harness("mtpo", ["alice", "bob"], BASE)
    later = h.op("bob", Append(F, "+b"))
    start = len(h.log)
    earlier = h.op("alice", Append(F, "+a"))
    effects = [a for a in h.log[start:] if isinstance(a, (Undo, Execute, Redo))]
    assert effects == [Undo(later), Execute(earlier), Redo(later, base_changed=True)]
    assert h.env.snapshot()[F] == "base+a+b"  # the serial result, in place
    assert [n.kind for n in h.notices("bob")] == ["write_reordered"]


def test_failed_reapply_is_dropped_and_its_agent_told() -> None:
    h = Harness("mtpo", ["alice", "bob"], BASE)
    bobs = h.op("bob", Replace(F, "base", "BASE"))
    h.op("alice", Write(F))  # alice rewrites the file: bob's old text is gone
    assert any(isinstance(a, Drop) and a.op_id == bobs for a in h.log)
    [notice] = h.notices("bob")
    assert notice.kind == "write_dropped" and notice.by == "alice"
    assert "BASE" not in h.env.snapshot()[F]


def test_blind_write_under_a_later_overwrite_needs_no_undo() -> None:
    h = Harness("mtpo", ["alice", "mid", "bob"], BASE)
    h.op("bob", Write(F))
    start = len(h.log)
    alices = h.op("alice", Write(F))
    assert Execute(alices, shadowed=True) in h.log[start:]
    assert not any(isinstance(a, Undo) for a in h.log[start:])
    bobs_value = h.env.snapshot()[F]
    read = h.op("mid", Read((F,)))  # served alice's version, though bob's is live
    assert h.seen(read, F) == h.env.images[alices].after[Key.parse(F)]
    assert h.env.snapshot()[F] == bobs_value


def test_order_filtered_read_served_from_stored_versions() -> None:
    h = Harness("mtpo", ["alice", "bob"], BASE)
    h.op("bob", Append(F, "+b"))
    read = h.op("alice", Read((F,), servable=True))
    assert any(isinstance(a, ServeRead) and a.sources == {Key.parse(F): digest("base")} for a in h.log)
    assert h.seen(read, F) == "base"
    assert h.env.snapshot()[F] == "base+b"


def test_order_filtered_read_by_undoing_later_writes_for_its_duration() -> None:
    h = Harness("mtpo", ["alice", "bob"], BASE)
    bobs = h.op("bob", Append(F, "+b"))
    start = len(h.log)
    read = h.op("alice", Read((F,), servable=False))
    assert [a for a in h.log[start:] if isinstance(a, (Undo, Redo))] == [Undo(bobs), Redo(bobs, base_changed=False)]
    assert h.seen(read, F) == "base" and h.env.snapshot()[F] == "base+b"


def test_irreversible_op_is_held_until_earlier_agents_finish() -> None:
    h = Harness("mtpo", ["alice", "bob"], BASE)
    emit = h.op("bob", Emit((F,)))
    assert Hold(emit) in h.log and h.env.published == []
    h.op("alice", Append(F, "+a"))
    h.finish("alice")
    assert Completed(emit) in h.log
    assert h.env.published == [("bob", ((F, "base+a"),))]


def test_finished_agent_is_resumed_by_a_notice() -> None:
    h = Harness("mtpo", ["alice", "bob"], BASE)
    h.op("bob", Read((F,)))
    h.finish("bob")
    h.op("alice", Append(F, "+a"))
    assert ResumeAgent("bob") in h.log


def test_quiescence_needs_finished_agents_and_delivered_notices() -> None:
    h = Harness("mtpo", ["alice", "bob"], BASE)
    h.op("bob", Read((F,)))
    h.op("alice", Append(F, "+a"))
    h.finish("alice")
    assert ResumeAgent("bob") in h.finish("bob")  # it stopped with a notice untaken
    assert Quiescent() not in h.log and not h.core.quiescent
    h.take("bob")
    h.feed(AgentFinished("bob"))
    assert Quiescent() in h.log and h.core.quiescent


def test_versions_are_collected_once_earlier_ranks_settle() -> None:
    h = Harness("mtpo", ["alice", "bob"], BASE)
    for i in range(20):
        h.op("alice", Append(F, str(i)))
    assert h.core.ledger.version_count() >= 20
    h.finish("alice")
    assert h.core.ledger.version_count() == 1  # only the folded base remains
    assert h.core.ledger.ops == {}


@pytest.mark.parametrize("controller", ["mtpo", "2pl", "occ", "serial", "none"])
def test_illegal_events_raise_and_leave_state_unchanged(controller: str) -> None:
    h = Harness(controller, ["alice", "bob"], BASE)
    op = h.op("alice", Append(F, "x"))
    before = h.core.snapshot()
    for bad in (
        OpRequested(OpSpec(op, "alice")),  # reused id
        OpRequested(OpSpec(999, "nobody")),
        AgentFinished("nobody"),
    ):
        with pytest.raises(ProtocolError):
            h.core.handle(bad)
    assert h.core.snapshot() == before
