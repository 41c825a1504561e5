"""The monitor's state and its live loop.

`MonitorState` is what a monitor knows: the newest snapshot, with every event since folded
into it (so the agents table moves between snapshots), and the newest `max_events` events
for the feed. Memory is bounded however fast the daemon publishes: the feed is a ring, the
folded ops list is capped, and a subscriber that falls behind is resynced by the daemon
with one fresh snapshot (see transport.Subscription), which replaces the folded state.

`fold` is approximate on purpose: events carry less than snapshots (no tokens, no cost),
so `run_view` also polls the daemon's status, when it is given a way to, and every
snapshot replaces what was folded. Events a snapshot already includes (by `seq`) are not
folded again.

`run_view` draws the state: with rich.Live on a terminal (redrawn on a timer, not per
event, so the drawing cost does not grow with the event rate), or as one plain line per
significant event plus a final summary table when the output is a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from rich.console import Console
from rich.live import Live

from coagent_cli.daemon.wire import AgentInfo, Event, OpInfo, Snapshot
from coagent_cli.errors import CoagentError
from coagent_cli.monitor.render import dashboard, is_significant, plain_line, summary_table

__all__ = ["MonitorState", "fold", "run_view"]

MAX_EVENTS = 200             # events kept for the feed
MAX_OPS = 200                # ops kept in the folded snapshot
REFRESH_EVERY = 0.25         # seconds between redraws of the live view
POLL_EVERY = 1.0             # seconds between status polls

_OP_STATE = {"op_begun": "running", "op_ended": "done", "op_undone": "undone",
             "op_redone": "done", "op_dropped": "dropped", "op_held": "held"}
_TOTAL_FIELD = {"op_ended": "ops", "op_undone": "undos", "op_redone": "redos",
                "op_dropped": "drops", "read_served": "served", "notice": "notices",
                "notice_handled": "notices_handled"}


# ---------------------------------------------------------------- folding


def fold(snapshot: Snapshot, event: Event) -> Snapshot:
    """The snapshot as it would be after `event` (a best effort; see the module doc)."""
    if event.kind == "snapshot":
        return event.snapshot if event.snapshot is not None else snapshot
    update: dict[str, object] = {"seq": event.seq}
    if event.kind in _OP_STATE and event.op is not None:
        update["ops"] = _fold_op(snapshot.ops, event)
    if event.kind in _TOTAL_FIELD and snapshot.totals is not None:
        field = _TOTAL_FIELD[event.kind]
        update["totals"] = snapshot.totals.model_copy(
            update={field: getattr(snapshot.totals, field) + 1})
    if event.kind == "tool_added" and snapshot.library_size is not None:
        update["library_size"] = snapshot.library_size + 1
    if event.agent is not None:
        update["agents"] = _fold_agents(snapshot.agents, event)
    return snapshot.model_copy(update=update)


def _fold_op(ops: list[OpInfo], event: Event) -> list[OpInfo]:
    state = _OP_STATE[event.kind]
    found = [i for i, op in enumerate(ops) if op.op == event.op]
    if found:
        changed = ops[found[-1]].model_copy(update={"state": state})
        return [*ops[: found[-1]], changed, *ops[found[-1] + 1:]]
    new = OpInfo(op=event.op or 1, agent=event.agent or "?", state=state,  # type: ignore[arg-type]
                 summary=event.detail,
                 writes=[event.key] if event.key else [])
    return [*ops, new][-MAX_OPS:]


def _fold_agents(agents: list[AgentInfo], event: Event) -> list[AgentInfo]:
    names = [a.name for a in agents]
    if event.agent not in names:
        if event.kind != "agent_joined":
            return agents
        rank = max((a.rank for a in agents), default=-1) + 1
        return [*agents, AgentInfo(name=event.agent, rank=rank, state="running",
                                   phase="thinking", started_at=event.at, since=event.at)]
    return [_fold_agent(a, event) if a.name == event.agent else a for a in agents]


def _fold_agent(agent: AgentInfo, event: Event) -> AgentInfo:
    kind = event.kind
    changes: dict[str, object] = {}
    if kind == "op_begun":
        changes = {"state": "running", "phase": "executing", "ops": agent.ops + 1,
                   "current": event.detail or None}
    elif kind in ("op_ended", "read_served") and agent.phase in ("executing", "waiting"):
        changes = {"phase": "thinking", "current": None}
    elif kind == "op_held":
        changes = {"state": "waiting", "phase": "waiting"}
    elif kind == "notice":
        changes = {"pending_notices": agent.pending_notices + 1}
    elif kind == "notice_handled":
        changes = {"pending_notices": max(agent.pending_notices - 1, 0),
                   "handled_notices": agent.handled_notices + 1, "phase": "repairing"}
    elif kind in ("agent_finished", "agent_resumed", "agent_crashed", "agent_joined"):
        changes = _lifecycle(kind, event)
    if "phase" in changes and changes["phase"] != agent.phase and event.at is not None:
        changes["since"] = event.at
    return agent.model_copy(update=changes) if changes else agent


def _lifecycle(kind: str, event: Event) -> dict[str, object]:
    state, phase = {"agent_finished": ("finished", "finished"),
                    "agent_resumed": ("running", "resumed"),
                    "agent_crashed": ("crashed", "crashed"),
                    "agent_joined": ("running", "thinking")}[kind]
    changes: dict[str, object] = {"state": state, "phase": phase, "current": None}
    if kind == "agent_finished" and event.at is not None:
        changes["finished_at"] = event.at
    return changes


# ---------------------------------------------------------------- state


class MonitorState:
    """The newest snapshot with later events folded in, and the newest events."""

    def __init__(self, snapshot: Snapshot | None = None, *, max_events: int = MAX_EVENTS) -> None:
        self.snapshot = snapshot or Snapshot()
        self.events: deque[Event] = deque(maxlen=max_events)
        self.ended = False           # the daemon said shutdown, or the stream closed
        self.skipped = 0             # events the daemon replaced by snapshots (we lagged)
        self.error: CoagentError | None = None  # why the stream ended, if it broke

    @property
    def seq(self) -> int:
        return self.snapshot.seq or 0

    def feed(self, event: Event) -> bool:
        """Take one event; True when it is worth a line in a log."""
        if event.kind == "snapshot":
            self.skipped += event.dropped
            self.snapshot = fold(self.snapshot, event).model_copy(update={"seq": event.seq})
        elif event.seq and event.seq <= self.seq:
            return False             # already part of the snapshot we hold
        else:
            self.snapshot = fold(self.snapshot, event)
        if event.kind == "shutdown":
            self.ended = True
        if is_significant(event):
            self.events.append(event)
            return True
        return False

    def replace(self, snapshot: Snapshot) -> None:
        """A polled snapshot: it wins over what was folded, unless it is older."""
        if snapshot.seq is None or snapshot.seq >= self.seq:
            self.snapshot = snapshot


# ---------------------------------------------------------------- the loop


async def run_view(events: AsyncIterator[Event], console: Console, *, live: bool,
                   clock: Callable[[], float] = time.time, stop: asyncio.Event | None = None,
                   poll: Callable[[], Awaitable[Snapshot]] | None = None,
                   poll_every: float = POLL_EVERY, refresh_every: float = REFRESH_EVERY,
                   max_events: int = MAX_EVENTS) -> MonitorState:
    """Show the run until the stream ends (shutdown or disconnect) or `stop` is set.
    Returns the final state. Live on a terminal; else plain lines and a summary table."""
    state = MonitorState(max_events=max_events)
    stop = stop or asyncio.Event()
    say = (lambda e: None) if live else (lambda e: console.print(plain_line(e, state.snapshot),
                                                               markup=False, highlight=False,
                                                               soft_wrap=True))
    tasks = [asyncio.create_task(_consume(events, state, say, stop))]
    if poll is not None:
        tasks.append(asyncio.create_task(_poll(poll, state, poll_every)))
    try:
        if live:
            await _draw_live(state, console, clock, stop, refresh_every)
        else:
            await stop.wait()
            console.print(summary_table(state.snapshot, now=clock()))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return state


async def _consume(events: AsyncIterator[Event], state: MonitorState,
                   say: Callable[[Event], None], stop: asyncio.Event) -> None:
    try:
        async for event in events:
            if state.feed(event):
                say(event)
            if state.ended:
                break
    except CoagentError as exc:      # a broken stream ends the view; the caller reports it
        state.error = exc
    finally:
        state.ended = True
        stop.set()
        closing = getattr(events, "aclose", None)
        if closing is not None:  # finalise the stream here, not in the loop's gc hook
            await closing()


async def _poll(poll: Callable[[], Awaitable[Snapshot]], state: MonitorState, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        state.replace(await poll())


async def _draw_live(state: MonitorState, console: Console, clock: Callable[[], float],
                     stop: asyncio.Event, every: float) -> None:
    """Redraw on a timer from this event loop (auto_refresh off: rich's refresh thread
    would read the state while the consumer task changes it)."""
    def frame() -> object:
        return dashboard(state.snapshot, state.events, now=clock())

    with Live(frame(), console=console, auto_refresh=False, redirect_stdout=False,
              redirect_stderr=False) as view:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            view.update(frame(), refresh=True)  # type: ignore[arg-type]
