"""MonitorState folding and bounds, and the live loop attached to a real server."""

from __future__ import annotations

import asyncio
import io
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from coagent_cli.daemon import wire
from coagent_cli.daemon.client import AsyncClient
from coagent_cli.daemon.transport import EventHub, FakeHandler, Server
from coagent_cli.monitor.view import MAX_OPS, MonitorState, fold, run_view

pytestmark = pytest.mark.timeout(30)

T0 = 1_700_000_000.0
AGENTS = {"alice": "tok-a", "bob": "tok-b"}
MONITOR = "tok-mon"


def base() -> wire.Snapshot:
    return wire.Snapshot(seq=10, totals=wire.RunTotals(), library_size=3, agents=[
        wire.AgentInfo(name="alice", rank=0, state="running", phase="thinking"),
        wire.AgentInfo(name="bob", rank=1, state="running", phase="thinking")])


def by_name(snap: wire.Snapshot) -> dict[str, wire.AgentInfo]:
    return {a.name: a for a in snap.agents}


def test_fold_moves_agents_and_counts_totals() -> None:
    notice = wire.Notice(id=1, key="file:a", kind="stale_read", by="alice")
    snap = base()
    for event in [wire.Event(seq=11, kind="op_begun", agent="alice", op=1, detail="make", at=T0),
                  wire.Event(seq=12, kind="notice", agent="bob", notice=notice)]:
        snap = fold(snap, event)
    alice, bob = by_name(snap)["alice"], by_name(snap)["bob"]
    assert (alice.phase, alice.current, alice.since, alice.ops) == ("executing", "make", T0, 1)
    assert bob.pending_notices == 1 and snap.totals and snap.totals.notices == 1
    for event in [wire.Event(seq=13, kind="op_ended", agent="alice", op=1, at=T0 + 2),
                  wire.Event(seq=14, kind="op_undone", agent="alice", op=1),
                  wire.Event(seq=15, kind="notice_handled", agent="bob", notice=notice),
                  wire.Event(seq=16, kind="agent_finished", agent="alice", at=T0 + 5),
                  wire.Event(seq=17, kind="tool_added", detail="t")]:
        snap = fold(snap, event)
    alice, bob = by_name(snap)["alice"], by_name(snap)["bob"]
    assert (alice.state, alice.phase, alice.finished_at) == ("finished", "finished", T0 + 5)
    assert (bob.pending_notices, bob.handled_notices, bob.phase) == (0, 1, "repairing")
    assert [(op.op, op.state, op.summary) for op in snap.ops] == [(1, "undone", "make")]
    assert snap.totals and (snap.totals.ops, snap.totals.undos, snap.totals.notices_handled) == (1, 1, 1)
    assert (snap.library_size, snap.seq) == (4, 17)


def test_fold_adds_joining_agents_and_ignores_unknown_ones() -> None:
    snap = fold(base(), wire.Event(kind="agent_joined", agent="carol", at=T0))
    assert [(a.name, a.rank) for a in snap.agents][-1] == ("carol", 2)
    assert fold(snap, wire.Event(kind="op_begun", agent="zed", op=5)).agents == snap.agents


def test_state_skips_events_its_snapshot_already_includes() -> None:
    state = MonitorState()
    state.feed(wire.Event(seq=10, kind="snapshot", snapshot=base()))
    assert not state.feed(wire.Event(seq=9, kind="op_ended", agent="alice", op=1))
    assert state.snapshot.totals and state.snapshot.totals.ops == 0
    assert state.feed(wire.Event(seq=11, kind="op_ended", agent="alice", op=1))
    assert state.snapshot.totals.ops == 1  # type: ignore[union-attr]
    state.replace(base().model_copy(update={"seq": 5}))  # an older poll loses
    assert state.seq == 11
    state.replace(base().model_copy(update={"seq": 12}))
    assert state.seq == 12 and state.snapshot.totals.ops == 0  # type: ignore[union-attr]


def test_state_stays_bounded_under_10000_events() -> None:
    state = MonitorState(base(), max_events=50)
    for i in range(10_000):
        kind = ["op_begun", "op_ended", "op_undone", "op_redone"][i % 4]
        state.feed(wire.Event(seq=11 + i, kind=kind, agent="alice", op=i // 4 + 1, detail="x"))
        assert len(state.events) <= 50 and len(state.snapshot.ops) <= MAX_OPS
    assert state.events[-1].seq == 10_010
    assert state.snapshot.totals and state.snapshot.totals.ops == 2_500
    # falling behind: the daemon's resync snapshot replaces everything that was folded
    state.feed(wire.Event(seq=20_000, kind="snapshot", dropped=9_000, snapshot=base()))
    assert state.skipped == 9_000 and state.snapshot.ops == [] and state.seq == 20_000
    assert "resync" not in [e.kind for e in state.events] and state.events[-1].kind == "snapshot"


async def _scripted(events: list[wire.Event]) -> AsyncIterator[wire.Event]:
    for event in events:
        yield event


def test_plain_view_prints_one_line_per_significant_event_and_a_summary() -> None:
    events = [wire.Event(seq=10, kind="snapshot", snapshot=base()),
              wire.Event(seq=11, kind="op_begun", agent="alice", op=1, detail="make"),
              wire.Event(seq=12, kind="op_ended", agent="alice", op=1),
              wire.Event(seq=13, kind="agent_finished", agent="alice"),
              wire.Event(seq=14, kind="shutdown"),
              wire.Event(seq=15, kind="op_begun", agent="bob", op=2)]  # after the end: unread
    out = io.StringIO()
    console = Console(width=100, file=out, color_system=None)
    state = asyncio.run(asyncio.wait_for(
        run_view(_scripted(events), console, live=False, clock=lambda: T0), 10))
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["#12 applied  alice        op 1 make", "#13 finished alice",
                         "#14 shutdown -"]
    assert "coagent run summary" in lines[3] and state.ended
    assert all(line.isprintable() for line in lines)
    assert by_name(state.snapshot)["bob"].ops == 0


def test_live_view_draws_the_dashboard_until_stopped() -> None:
    async def scenario() -> str:
        stop = asyncio.Event()
        out = io.StringIO()
        console = Console(width=100, file=out, color_system=None, force_terminal=True)

        async def forever() -> AsyncIterator[wire.Event]:
            yield wire.Event(seq=10, kind="snapshot", snapshot=base())
            await asyncio.Event().wait()
            yield wire.Event(kind="shutdown")  # pragma: no cover

        task = asyncio.create_task(run_view(forever(), console, live=True, stop=stop,
                                            clock=lambda: T0, refresh_every=0.01))
        await asyncio.sleep(0.1)
        stop.set()
        await task
        return out.getvalue()
    drawn = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert "Agents" in drawn and "alice" in drawn and "bob" in drawn


# ---------------------------------------------------------------- end to end


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="cgm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _agent_session(path: Path, name: str) -> None:
    async with await AsyncClient.connect(path, timeout=10) as client:
        await client.hello(agent=name, token=AGENTS[name])
        grant = await client.begin_op(command=f"echo {name}", cwd="/w")
        await client.end_op(grant.op, 0)
        assert (await client.finish()).finished


def test_monitor_attaches_to_a_real_server_and_sees_agents_finish(short_dir: Path) -> None:
    async def scenario() -> tuple[MonitorState, str]:
        hub = EventHub(maxsize=64)
        handler = FakeHandler(AGENTS, monitor_token=MONITOR, hub=hub)
        path = short_dir / "run" / "d.sock"
        async with Server(path, handler, hub=hub, grace=1.0):
            stream = await AsyncClient.connect(path, timeout=10)
            poller = await AsyncClient.connect(path, timeout=10)
            await stream.hello(role="monitor", token=MONITOR)
            await poller.hello(role="monitor", token=MONITOR)
            out = io.StringIO()
            console = Console(width=100, file=out, color_system=None)
            stop = asyncio.Event()

            async def poll() -> wire.Snapshot:
                return (await poller.status()).snapshot

            view = asyncio.create_task(run_view(stream.subscribe(), console, live=False, stop=stop,
                                                poll=poll, poll_every=0.05))
            await asyncio.wait_for(_wait_for(lambda: hub.subscribers == 1), 5)
            await asyncio.gather(_agent_session(path, "alice"), _agent_session(path, "bob"))
            await asyncio.wait_for(_wait_for(lambda: _finished(out.getvalue()) == 2), 5)
            stop.set()  # told to exit while the daemon still runs
            state = await asyncio.wait_for(view, 5)
            await stream.close()
            await poller.close()
        return state, out.getvalue()

    state, text = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert {a.name: a.state for a in state.snapshot.agents} == {"alice": "finished", "bob": "finished"}
    assert "applied  alice" in text and "applied  bob" in text
    assert "coagent run summary (none)" in text and not state.error


def _finished(text: str) -> int:
    return sum(" finished " in line for line in text.splitlines())


async def _wait_for(predicate) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0.01)


def test_monitor_exits_when_the_daemon_stops(short_dir: Path) -> None:
    async def scenario() -> MonitorState:
        hub = EventHub()
        handler = FakeHandler(AGENTS, monitor_token=MONITOR, hub=hub)
        path = short_dir / "run" / "d.sock"
        server = await Server(path, handler, hub=hub, grace=1.0).start()
        client = await AsyncClient.connect(path, timeout=10)
        await client.hello(role="monitor", token=MONITOR)
        console = Console(width=100, file=io.StringIO(), color_system=None)
        view = asyncio.create_task(run_view(client.subscribe(), console, live=False))
        await asyncio.wait_for(_wait_for(lambda: hub.subscribers == 1), 5)
        await server.close()
        state = await asyncio.wait_for(view, 5)
        await client.close()
        return state
    state = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert state.ended and state.error is None
