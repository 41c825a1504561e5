"""The dashboard rendered for scripted snapshots into a fixed-width console, compared as text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console, RenderableType

from coagent_cli.daemon import wire
from coagent_cli.monitor.render import (
    SPINNER,
    agent_phase,
    clean,
    contention,
    dashboard,
    plain_line,
    summary_table,
)
from coagent_cli.monitor.sample import sample_text

pytestmark = pytest.mark.timeout(30)

T0 = 1_700_000_000.0
WIDTH = 100


def render(renderable: RenderableType, width: int = WIDTH) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def agent(name: str, rank: int, **fields: object) -> wire.AgentInfo:
    fields.setdefault("state", "running")
    return wire.AgentInfo(name=name, rank=rank, started_at=T0, **fields)  # type: ignore[arg-type]


def demo_snapshot(**fields: object) -> wire.Snapshot:
    agents = [
        agent("writer", 2, state="finished", steps=4, tokens=9120, finished_at=T0 + 88),
        agent("planner", 0, phase="executing", current="pytest -q tests/", steps=9,
              tokens=31840, since=T0 + 130),
        agent("coder", 1, phase="thinking", steps=6, tokens=22410, pending_notices=1,
              handled_notices=2, since=T0 + 121),
    ]
    base: dict[str, object] = dict(
        cc="mtpo", started_at=T0, library_size=14, agents=agents,
        totals=wire.RunTotals(ops=24, undos=3, redos=2, drops=1, served=2, notices=4,
                              notices_handled=3, tokens=63370, cost=0.4),
        contention=[wire.KeyContention(key="file:src/app.py", agents=["planner", "coder"], conflicts=3)])
    base.update(fields)
    return wire.Snapshot(**base)  # type: ignore[arg-type]


def rows_of(text: str, *names: str) -> list[str]:
    return [line for line in text.splitlines() if any(f" {n} " in line for n in names)]


def test_agents_are_listed_in_rank_order_with_their_states() -> None:
    text = render(dashboard(demo_snapshot(), now=T0 + 134.2))
    rows = rows_of(text, "planner", "coder", "writer")[:3]
    assert [r.split()[2] for r in rows] == ["planner", "coder", "writer"]
    assert "executing 4s" in rows[0] and "pytest -q tests/" in rows[0]
    assert "thinking 13s" in rows[1] and "1/2" in rows[1]
    assert "finished" in rows[2] and "1m28s" in rows[2]  # a finished agent's time stops
    assert "0  planner" in rows[0] and "2m14s" in rows[0]


def test_totals_and_header() -> None:
    text = render(dashboard(demo_snapshot(), now=T0 + 134.2))
    assert "coagent · mtpo · 3 agents · running" in text
    assert "ops 24 · undos 3 · redos 2 · drops 1 · served 2 · notices 4 (3 handled)" in text
    assert "wall 2m14s · controller mtpo · library 14 · tokens 63.4k · cost $0.40" in text
    assert all(len(line) <= WIDTH for line in text.splitlines())


def test_thinking_agent_has_a_spinner_that_moves_with_the_injected_time() -> None:
    frames = set()
    for tenth in range(len(SPINNER)):
        text = render(dashboard(demo_snapshot(), now=T0 + 134 + tenth / 10))
        (row,) = [line for line in rows_of(text, "coder") if "thinking" in line]
        frames.add(row.split("thinking")[0].split()[-1])
    assert frames == set(SPINNER)


def test_rendering_is_a_pure_function_of_its_arguments() -> None:
    snap = demo_snapshot()
    assert render(dashboard(snap, now=T0 + 50)) == render(dashboard(snap, now=T0 + 50))


def test_long_command_is_truncated_to_fit_the_width() -> None:
    long = "sed -i 's/old/new/' " + " ".join(f"src/module_{i}.py" for i in range(40))
    snap = demo_snapshot(agents=[agent("planner", 0, phase="executing", current=long)])
    text = render(dashboard(snap, now=T0 + 10))
    (row,) = rows_of(text, "planner")
    assert "sed -i 's/old/new/' src/module_0" in row and "…" in row
    assert row.split()[-2] == "10s"  # the columns after the truncated one are all there
    assert "module_39" not in text
    assert all(len(line) <= WIDTH for line in text.splitlines())


def test_control_characters_from_the_daemon_do_not_break_the_layout() -> None:
    nasty = "echo hi\n\x1b[2J\x1b]0;owned\x07rm -rf x\t[bold]y[/bold]"
    snap = demo_snapshot(agents=[agent("planner", 0, phase="executing", current=nasty)])
    text = render(dashboard(snap, now=T0))
    (row,) = rows_of(text, "planner")
    assert "echo hi [2J]0;ownedrm -rf x [bold]y[/bold]"[:30] in row
    assert "\x1b" not in text and "\x07" not in text


def test_empty_run() -> None:
    text = render(dashboard(wire.Snapshot(cc="2pl"), [], now=T0))
    for expected in ("coagent · 2pl · 0 agents · running", "no agents yet", "no contended keys",
                     "no events yet", "ops 0 · undos 0", "wall - · controller 2pl · library -"):
        assert expected in text


def test_many_events_show_only_the_newest() -> None:
    events = [wire.Event(seq=i, kind="op_ended", agent="coder", op=i, detail=f"cmd-{i}")
              for i in range(1, 501)]
    text = render(dashboard(demo_snapshot(), events, now=T0, feed_lines=6))
    shown = [line for line in text.splitlines() if "applied" in line]
    assert len(shown) == 6
    assert "cmd-500" in shown[-1] and "cmd-495" in shown[0] and "cmd-494 " not in text


def test_feed_lists_protocol_events_with_op_summaries_and_times() -> None:
    snap = demo_snapshot(ops=[wire.OpInfo(op=7, agent="coder", state="done", summary="make build")])
    notice = wire.Notice(id=1, key="file:src/app.py", kind="stale_read", by="planner")
    events = [
        wire.Event(seq=1, kind="op_begun", agent="coder", op=7, at=T0 + 1),     # not in the feed
        wire.Event(seq=2, kind="op_ended", agent="coder", op=7, at=T0 + 2),
        wire.Event(seq=3, kind="read_served", agent="coder", op=8, key="file:src/app.py", at=T0 + 3),
        wire.Event(seq=4, kind="op_undone", agent="coder", op=7, key="file:src/app.py", at=T0 + 4),
        wire.Event(seq=5, kind="op_redone", agent="coder", op=7, at=T0 + 5),
        wire.Event(seq=6, kind="op_dropped", agent="coder", op=9, detail="merge conflict", at=T0 + 6),
        wire.Event(seq=7, kind="notice", agent="coder", notice=notice, at=T0 + 7),
        wire.Event(seq=8, kind="notice_handled", agent="coder", notice=notice, at=T0 + 8),
        wire.Event(seq=9, kind="agent_finished", agent="coder", at=T0 + 9),
        wire.Event(seq=10, kind="agent_resumed", agent="coder", at=T0 + 70),
        wire.Event(seq=11, kind="tool_added", detail="bump_version", at=T0 + 71),
    ]
    text = render(dashboard(snap, events, now=T0 + 80))
    feed = text[text.index("Events"):].splitlines()
    labels = [line.split()[2] for line in feed[1:11]]
    assert labels == ["applied", "served", "undo", "redo", "drop", "notice", "handled",
                      "finished", "resumed", "tool+"]
    assert "+2s" in feed[1] and "op 7 make build" in feed[1]
    assert "op 9 merge conflict" in feed[5]
    assert "file:src/app.py written by planner (stale_read)" in feed[6]
    assert "+1m10s" in feed[9] and "bump_version" in feed[10]


def test_states_are_derived_when_the_daemon_sends_no_phase() -> None:
    ops = [wire.OpInfo(op=1, agent="a", state="running", summary="ls"),
           wire.OpInfo(op=2, agent="b", state="held", summary="curl x")]
    states = {"a": "running", "b": "running", "c": "running", "d": "crashed", "e": "registered"}
    found = {n: agent_phase(wire.AgentInfo(name=n, rank=0, state=s), ops)  # type: ignore[arg-type]
             for n, s in states.items()}
    assert found == {"a": "executing", "b": "waiting", "c": "thinking", "d": "crashed", "e": "starting"}
    snap = wire.Snapshot(agents=[wire.AgentInfo(name="a", rank=0, state="running")], ops=ops)
    (row,) = rows_of(render(dashboard(snap, now=T0)), "a")
    assert "executing" in row and " ls " in row + " "


def test_contention_is_derived_from_ops_when_the_daemon_sends_none() -> None:
    ops = [wire.OpInfo(op=1, agent="b", state="done", summary="x", writes=["file:k"]),
           wire.OpInfo(op=2, agent="a", state="done", summary="y", reads=["file:k", "file:solo"]),
           wire.OpInfo(op=3, agent="a", state="done", summary="z", writes=["file:k"])]
    snap = wire.Snapshot(agents=[wire.AgentInfo(name="a", rank=0, state="running"),
                                 wire.AgentInfo(name="b", rank=1, state="running")], ops=ops)
    assert [(c.key, c.agents, c.conflicts) for c in contention(snap)] == [("file:k", ["a", "b"], 3)]
    assert "file:k" in render(dashboard(snap, now=T0))


def test_plain_line_has_no_control_characters() -> None:
    notice = wire.Notice(id=1, key="file:a\nb", kind="write_dropped", by="x", detail="bad\x1b[31m\r\n")
    events = [wire.Event(seq=1, kind="op_ended", agent="a", op=1, detail="printf '\\e[2J'\n\x1b[2J\x00\x7f"),
              wire.Event(seq=2, kind="notice", agent="b", notice=notice),
              wire.Event(seq=3, kind="snapshot", dropped=40, snapshot=wire.Snapshot()),
              wire.Event(seq=4, kind="op_ended", agent="a", op=1, detail="y" * 5000)]
    lines = [plain_line(e) for e in events]
    for line in lines:
        assert line.isprintable() and len(line) <= 240
    assert lines[0].startswith("#1 applied  a") and "op 1 printf" in lines[0]
    assert "40 events replaced by a snapshot" in lines[2]


def test_plain_line_names_ops_from_the_snapshot() -> None:
    snap = wire.Snapshot(ops=[wire.OpInfo(op=3, agent="a", state="done", summary="git commit -m x")])
    assert plain_line(wire.Event(seq=9, kind="op_undone", agent="a", op=3, key="git:HEAD"), snap) == \
        "#9 undo     a            op 3 git commit -m x on git:HEAD"


def test_clean_keeps_printable_text() -> None:
    assert clean("añ → ✓ ok") == "añ → ✓ ok"
    assert clean("a\tb\nc\u202ed\u200b") == "a b cd"


def test_summary_table_is_ascii_and_lists_every_agent() -> None:
    text = render(summary_table(demo_snapshot(), now=T0 + 134), width=100)
    lines = text.splitlines()
    assert all(line.isascii() for line in lines if "|" in line or "+" in line)
    rows = [line for line in lines if line.startswith("|") and ("planner" in line or "coder" in line
                                                                or "writer" in line)]
    assert [r.split("|")[2].strip() for r in rows] == ["planner", "coder", "writer"]
    assert "1m28s" in rows[2] and "wall 2m14s" in text


def test_readme_capture_matches_the_renderer() -> None:
    capture = Path(__file__).resolve().parents[1] / "docs" / "monitor-sample.txt"
    assert capture.read_text(encoding="utf-8") == sample_text(), \
        "regenerate: python -m coagent_cli.monitor.sample > docs/monitor-sample.txt"
