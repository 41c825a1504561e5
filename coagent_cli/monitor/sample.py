"""A plausible three-agent run, frozen mid-flight, for the README's dashboard capture.

`python -m coagent_cli.monitor.sample > docs/monitor-sample.txt` regenerates the capture;
a test checks the file still matches what the renderer draws, so the README cannot drift
from the code.
"""

from __future__ import annotations

import io

from rich.console import Console

from coagent_cli.daemon.wire import (
    AgentInfo,
    Event,
    KeyContention,
    Notice,
    OpInfo,
    RunTotals,
    Snapshot,
)
from coagent_cli.monitor.render import dashboard

__all__ = ["T0", "NOW", "sample_snapshot", "sample_events", "sample_text"]

T0 = 1_750_000_000.0         # when the sample run was launched
NOW = T0 + 134.2             # the moment the capture shows
ROUTES = "file:src/api/routes.py"


def sample_snapshot() -> Snapshot:
    agents = [
        AgentInfo(name="api-dev", rank=0, state="running", phase="executing", steps=9, ops=12,
                  current="sed -i 's/v1/v2/g' src/api/routes.py && pytest -q tests/test_routes.py",
                  tokens=31_840, cost=0.21, started_at=T0, since=T0 + 130.1),
        AgentInfo(name="docs-writer", rank=1, state="running", phase="thinking", steps=6, ops=7,
                  tokens=22_410, cost=0.14, pending_notices=1, handled_notices=2,
                  started_at=T0, since=T0 + 121.0),
        AgentInfo(name="release-bot", rank=2, state="finished", steps=4, ops=5, tokens=9_120,
                  cost=0.05, handled_notices=1, started_at=T0, finished_at=T0 + 88.4),
    ]
    ops = [OpInfo(op=16, agent="api-dev", state="done", summary="replace(path=src/api/routes.py)",
                  writes=[ROUTES]),
           OpInfo(op=21, agent="api-dev", state="running", summary=agents[0].current or "",
                  reads=[ROUTES], writes=[ROUTES])]
    return Snapshot(
        cc="mtpo", agents=agents, ops=ops, seq=58, started_at=T0, library_size=14,
        totals=RunTotals(ops=24, undos=3, redos=3, drops=0, served=2, notices=4,
                         notices_handled=3, tokens=63_370, cost=0.40),
        contention=[KeyContention(key=ROUTES, agents=["api-dev", "docs-writer"], conflicts=3),
                    KeyContention(key="file:CHANGELOG.md", agents=["api-dev", "release-bot"], conflicts=1),
                    KeyContention(key="git:index", agents=["api-dev", "docs-writer", "release-bot"],
                                  conflicts=1)])


def sample_events() -> list[Event]:
    notice = Notice(id=4, key=ROUTES, kind="stale_read", by="api-dev", op=16,
                    detail="routes now under /v2")
    script = [
        ("op_ended", "release-bot", 11, None, "git tag v2.0.0", 80.2),
        ("agent_finished", "release-bot", None, None, "", 88.4),
        ("op_undone", "docs-writer", 15, ROUTES, "", 101.0),
        ("op_ended", "api-dev", 16, ROUTES, "", 101.1),
        ("op_redone", "docs-writer", 15, ROUTES, "three-way merge", 101.3),
        ("read_served", "docs-writer", 17, ROUTES, "", 110.6),
        ("tool_added", None, None, None, "bump_version (learned from 3 raw commands)", 115.0),
    ]
    events = [Event(seq=50 + i, kind=kind, agent=who, op=op, key=key, detail=detail, at=T0 + t)
              for i, (kind, who, op, key, detail, t) in enumerate(script)]
    events.insert(4, Event(seq=54, kind="notice", agent="docs-writer", notice=notice, at=T0 + 101.2))
    return events


def sample_text(width: int = 100) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(dashboard(sample_snapshot(), sample_events(), now=NOW))
    return console.export_text()


if __name__ == "__main__":
    print(sample_text(), end="")
