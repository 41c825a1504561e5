"""The dashboard as pure functions: a daemon snapshot and recent events in, renderables out.

Nothing here reads a clock or touches a terminal: the time is the `now` argument (unix
seconds, the same clock as the snapshot's `*_at` fields), so tests render a scripted
snapshot into a fixed-width console and compare the text. All text that comes from the
daemon (commands, keys, details) is shown through `clean`, and always as `Text`, never as
markup, so an agent's command can neither break the layout nor inject styles.

Fields a daemon leaves at their defaults are derived where they can be (an agent's phase
from its state and ops, totals from the agents and the recent ops) and shown as "-" where
they cannot.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from coagent_cli.daemon.wire import AgentInfo, Event, KeyContention, OpInfo, RunTotals, Snapshot

__all__ = ["dashboard", "plain_line", "summary_table", "agent_phase", "clean", "is_significant"]

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPINNER_RATE = 10.0          # frames per second; the frame is a function of `now`
FEED_LINES = 10              # newest events shown in the dashboard's feed
CONTENDED_KEYS = 5           # rows of the contention table
PLAIN_WIDTH = 240            # longest plain line, so CI logs stay readable

PHASE_MARK = {"executing": "▶", "waiting": "…", "repairing": "↻", "finished": "✓",
              "resumed": "↺", "crashed": "✗", "starting": "·", "retracted": "⤺"}
PHASE_STYLE = {"thinking": "cyan", "executing": "bold green", "waiting": "yellow",
               "repairing": "magenta", "finished": "dim", "resumed": "blue",
               "crashed": "bold red", "retracted": "red"}
TIMED_PHASES = frozenset({"thinking", "executing", "waiting", "repairing", "resumed"})

# Label of each significant event kind in the feed and in plain lines. op_begun is left
# out on purpose: the agents table shows what runs now; the feed shows what happened.
EVENT_LABEL = {
    "op_ended": "applied", "read_served": "served", "op_undone": "undo", "op_redone": "redo",
    "op_dropped": "drop", "op_held": "held", "notice": "notice", "notice_handled": "handled",
    "agent_joined": "joined", "agent_left": "left", "agent_finished": "finished",
    "agent_resumed": "resumed", "agent_crashed": "crashed", "tool_added": "tool+",
    "shutdown": "shutdown",
}
EVENT_STYLE = {"op_undone": "yellow", "op_redone": "blue", "op_dropped": "bold red",
               "notice": "magenta", "agent_crashed": "bold red", "agent_finished": "green",
               "tool_added": "cyan", "read_served": "cyan"}


# ---------------------------------------------------------------- text helpers


def clean(text: str) -> str:
    """`text` on one line with no control or format characters (tabs and newlines
    become spaces; escapes, bidi overrides and the like are removed)."""
    if text.isprintable():
        return text
    return "".join(" " if ch in "\t\n\r\v\f" else ch for ch in text
                   if ch in "\t\n\r\v\f" or not unicodedata.category(ch).startswith("C"))


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def duration(seconds: float | None) -> str:
    """42s, 3m05s, 1h02m; "-" when unknown."""
    if seconds is None:
        return "-"
    whole = max(int(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def count(value: int) -> str:
    """1234 -> 1.2k, 5600000 -> 5.6M."""
    if value < 1000:
        return str(value)
    if value < 1_000_000:
        return f"{value / 1000:.1f}k"
    return f"{value / 1_000_000:.1f}M"


def money(value: float) -> str:
    return f"${value:.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def since(start: float | None, now: float | None) -> float | None:
    return None if start is None or now is None else now - start


# ---------------------------------------------------------------- agents


def agent_phase(agent: AgentInfo, ops: Sequence[OpInfo] = ()) -> str:
    """The dashboard state of an agent: the daemon's `phase` when it sends one, else
    derived from its coarse state and its live ops."""
    if agent.phase is not None:
        return agent.phase
    if agent.state == "registered":
        return "starting"
    if agent.state != "running":
        return agent.state
    mine = [op.state for op in ops if op.agent == agent.name]
    if "running" in mine:
        return "executing"
    return "waiting" if "held" in mine else "thinking"


def agent_doing(agent: AgentInfo, ops: Sequence[OpInfo] = ()) -> str:
    if agent.current is not None:
        return clean(agent.current)
    live = [op for op in ops if op.agent == agent.name and op.state in ("running", "held")]
    return clean(live[-1].summary) if live else ""


def _state_cell(phase: str, agent: AgentInfo, now: float) -> Text:
    if phase == "thinking":
        mark = SPINNER[int(now * SPINNER_RATE) % len(SPINNER)]
    else:
        mark = PHASE_MARK.get(phase, " ")
    cell = Text(f"{mark} {phase}", style=PHASE_STYLE.get(phase, ""))
    if phase in TIMED_PHASES and agent.since is not None:
        cell.append(f" {duration(now - agent.since)}", style="dim")
    return cell


def _agent_time(agent: AgentInfo, now: float) -> str:
    if agent.started_at is None:
        return "-"
    end = agent.finished_at if agent.state == "finished" and agent.finished_at else now
    return duration(end - agent.started_at)


def agents_table(snapshot: Snapshot, now: float) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=True, show_edge=False, padding=(0, 1, 0, 0), title_justify="left",
                  title="Agents", title_style="bold")
    table.add_column("#", justify="right", width=2, no_wrap=True)
    table.add_column("agent", max_width=16, no_wrap=True, overflow="ellipsis")
    table.add_column("state", width=17, no_wrap=True, overflow="ellipsis")
    table.add_column("doing", ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("notices", justify="right", no_wrap=True, header_style="bold")
    table.add_column("time", justify="right", no_wrap=True)
    for agent in sorted(snapshot.agents, key=lambda a: (a.rank, a.name)):
        phase = agent_phase(agent, snapshot.ops)
        table.add_row(str(agent.rank), agent.name, _state_cell(phase, agent, now),
                      Text(agent_doing(agent, snapshot.ops)), str(agent.steps),
                      count(agent.tokens), f"{agent.pending_notices}/{agent.handled_notices}",
                      _agent_time(agent, now))
    if not snapshot.agents:
        table.add_row("", Text("no agents yet", style="dim"), "", "", "", "", "", "")
    return table


# ---------------------------------------------------------------- contention


def contention(snapshot: Snapshot, limit: int = CONTENDED_KEYS) -> list[KeyContention]:
    """The daemon's list when it sends one; else keys that two or more agents touched in
    the recent ops, with `conflicts` counting the ops that touched them."""
    if snapshot.contention:
        return snapshot.contention[:limit]
    ranks = {a.name: a.rank for a in snapshot.agents}
    touched: dict[str, list[str]] = {}
    for op in snapshot.ops:
        for key in dict.fromkeys([*op.reads, *op.writes]):
            touched.setdefault(key, []).append(op.agent)
    rows = [KeyContention(key=key, conflicts=len(who),
                          agents=sorted(set(who), key=lambda n: (ranks.get(n, 1 << 62), n)))
            for key, who in touched.items() if len(set(who)) > 1]
    rows.sort(key=lambda row: (-len(row.agents), -row.conflicts, row.key))
    return rows[:limit]


def contention_table(snapshot: Snapshot) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=True, show_edge=False, padding=(0, 1, 0, 0), title="Contention",
                  title_justify="left", title_style="bold")
    table.add_column("key", ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column("conflicts", justify="right", no_wrap=True)
    table.add_column("agents", ratio=1, no_wrap=True, overflow="ellipsis")
    rows = contention(snapshot)
    for row in rows:
        table.add_row(Text(clean(row.key)), str(row.conflicts), Text(", ".join(row.agents)))
    if not rows:
        table.add_row(Text("no contended keys", style="dim"), "", "")
    return table


# ---------------------------------------------------------------- events


def is_significant(event: Event) -> bool:
    """Worth a line in the feed or the CI log."""
    return event.kind in EVENT_LABEL or (event.kind == "snapshot" and event.dropped > 0)


def _op_text(event: Event, summaries: dict[int, str]) -> str:
    if event.op is None:
        return ""
    what = event.detail or summaries.get(event.op, "")
    return f"op {event.op}" + (f" {what}" if what else "")


def describe(event: Event, summaries: dict[int, str] | None = None) -> tuple[str, str, str]:
    """(label, agent, text) of one event; `summaries` maps op ids to command lines."""
    summaries = summaries or {}
    label = EVENT_LABEL.get(event.kind, event.kind)
    if event.kind == "snapshot":
        return "resync", "", f"monitor fell behind; {event.dropped} events replaced by a snapshot"
    if event.kind in ("notice", "notice_handled") and event.notice is not None:
        n = event.notice
        text = f"{n.key} written by {n.by} ({n.kind})" + (f": {n.detail}" if n.detail else "")
    elif event.op is not None:
        text = _op_text(event, summaries) + (f" on {event.key}" if event.key else "")
    else:
        text = " ".join(part for part in (event.key or "", event.detail) if part)
    return label, clean(event.agent or ""), clean(text)


def plain_line(event: Event, snapshot: Snapshot | None = None) -> str:
    """One line for a CI log: `#seq label agent text`, no control characters. Give the
    snapshot to name ops by their command when the event does not carry it."""
    summaries = {op.op: op.summary for op in snapshot.ops} if snapshot else {}
    label, agent, text = describe(event, summaries)
    line = f"#{event.seq} {label:<8} {agent or '-':<12} {text}".rstrip()
    return shorten(clean(line), PLAIN_WIDTH)


def _event_time(event: Event, started_at: float | None) -> str:
    if event.at is not None and started_at is not None:
        return "+" + duration(event.at - started_at)
    return f"#{event.seq}"


def events_table(snapshot: Snapshot, events: Iterable[Event], lines: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=True, show_edge=False, padding=(0, 1, 0, 0), title="Events",
                  title_justify="left", title_style="bold", show_header=False)
    table.add_column("when", justify="right", no_wrap=True, width=7)
    table.add_column("what", no_wrap=True, width=8)
    table.add_column("agent", no_wrap=True, max_width=14, overflow="ellipsis")
    table.add_column("detail", ratio=1, no_wrap=True, overflow="ellipsis")
    summaries = {op.op: op.summary for op in snapshot.ops}
    shown = [e for e in events if is_significant(e)][-lines:] if lines > 0 else []
    for event in shown:
        label, agent, text = describe(event, summaries)
        table.add_row(_event_time(event, snapshot.started_at),
                      Text(label, style=EVENT_STYLE.get(event.kind, "")), Text(agent), Text(text))
    if not shown:
        table.add_row("", "", "", Text("no events yet", style="dim"))
    return table


# ---------------------------------------------------------------- totals


def totals(snapshot: Snapshot) -> RunTotals:
    """The daemon's counters, or what the agents and the recent ops add up to."""
    if snapshot.totals is not None:
        return snapshot.totals
    states = [op.state for op in snapshot.ops]
    agents = snapshot.agents
    return RunTotals(ops=states.count("done"), undos=states.count("undone"),
                     drops=states.count("dropped"),
                     notices=sum(a.pending_notices + a.handled_notices for a in agents),
                     notices_handled=sum(a.handled_notices for a in agents),
                     tokens=sum(a.tokens for a in agents), cost=sum(a.cost for a in agents))


def run_status(snapshot: Snapshot) -> str:
    if snapshot.quiescent:
        return "quiescent"
    if snapshot.agents and all(a.state in ("finished", "crashed", "retracted") for a in snapshot.agents):
        return "all finished"
    return "running"


def totals_text(snapshot: Snapshot, now: float | None) -> Text:
    t = totals(snapshot)
    library = "-" if snapshot.library_size is None else str(snapshot.library_size)
    protocol = [("ops", str(t.ops)), ("undos", str(t.undos)), ("redos", str(t.redos)),
                ("drops", str(t.drops)), ("served", str(t.served)),
                ("notices", f"{t.notices} ({t.notices_handled} handled)")]
    spend = [("wall", duration(since(snapshot.started_at, now))), ("controller", clean(snapshot.cc)),
             ("library", library), ("tokens", count(t.tokens)), ("cost", money(t.cost))]
    return Text("\n").join([_pairs(protocol), _pairs(spend)])


def _pairs(parts: list[tuple[str, str]]) -> Text:
    text = Text()
    for i, (name, value) in enumerate(parts):
        text.append(" · " if i else "", style="dim")
        text.append(f"{name} ", style="dim")
        text.append(value, style="bold")
    return text


# ---------------------------------------------------------------- the whole view


def dashboard(snapshot: Snapshot, events: Iterable[Event] = (), *, now: float,
              feed_lines: int = FEED_LINES) -> RenderableType:
    """The live view of a run as of `now`: agents, contention, the newest events, totals."""
    title = Text.assemble(("coagent", "bold"), f" · {clean(snapshot.cc)} · ",
                          f"{len(snapshot.agents)} agents · ", (run_status(snapshot), "bold"))
    body = Group(agents_table(snapshot, now), "", contention_table(snapshot), "",
                 events_table(snapshot, events, feed_lines), "", totals_text(snapshot, now))
    return Panel(body, title=title, title_align="left", box=box.ROUNDED, padding=(0, 1))


def summary_table(snapshot: Snapshot, *, now: float | None = None) -> RenderableType:
    """The end-of-run table for logs: one row per agent, then the run totals (wall time
    only when `now` is given). ASCII borders, so it is safe in any CI log."""
    table = Table(box=box.ASCII, title=f"coagent run summary ({clean(snapshot.cc)})",
                  title_justify="left")
    for name, justify in [("#", "right"), ("agent", "left"), ("state", "left"),
                          ("steps", "right"), ("ops", "right"), ("tokens", "right"),
                          ("cost", "right"), ("notices", "right"), ("time", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for agent in sorted(snapshot.agents, key=lambda a: (a.rank, a.name)):
        took = (agent.finished_at - agent.started_at
                if agent.finished_at is not None and agent.started_at is not None else None)
        table.add_row(str(agent.rank), agent.name, agent_phase(agent, snapshot.ops),
                      str(agent.steps), str(agent.ops), count(agent.tokens), money(agent.cost),
                      f"{agent.pending_notices}/{agent.handled_notices}", duration(took))
    return Group(table, totals_text(snapshot, now))
