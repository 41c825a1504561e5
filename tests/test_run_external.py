"""A run plan of three external agents: plain Python scripts that use only
`coagent exec`, `coagent inbox --json` and think time (issue 4's acceptance plan).

Each agent reads one shared file, thinks, and rewrites it whole with its own slot
filled in: a read-modify-write of the same file by everyone. Under mtpo the result is
the serial run's and the makespan is clearly below serial's; under none, updates are
lost (so this check can fail)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from coagent_cli.run.launcher import RunOptions, run_plan
from coagent_cli.run.plan import parse_plan

pytestmark = pytest.mark.timeout(120)

AGENT = r'''
import json, os, shlex, subprocess, sys, time

me, slot = sys.argv[1], int(sys.argv[2])

def coagent(*args):
    return subprocess.run(["coagent", *args], capture_output=True, text=True, check=True).stdout

resumed = bool(os.environ.get("COAGENT_RESUME"))
if resumed:
    coagent("inbox", "--json")   # take the notices: something I read changed
current = coagent("exec", "--", "cat", "slots.txt")
barrier = os.environ.get("BARRIER")  # the `none` test: every read before any write
if barrier and not resumed:
    open(os.path.join(barrier, me), "w").close()
    deadline = time.monotonic() + 20
    while len(os.listdir(barrier)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
if not resumed:
    time.sleep(2.0)   # thinking; re-judging a notice about another slot is quick
lines = current.splitlines()
want = f"slot{slot}: {me}"
if lines[slot * 3] != want:
    lines[slot * 3] = want
    body = "".join(line + "\n" for line in lines)
    coagent("exec", "--", "sh", "-c", f"printf %s {shlex.quote(body)} > slots.txt")
'''

SLOTS = "".join(f"slot{i}: -\nkeep\nkeep\n" for i in range(3))
SERIAL = "".join(f"slot{i}: ag{i}\nkeep\nkeep\n" for i in range(3))


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cx", dir="/tmp"))
    (path / "slots.txt").write_text(SLOTS)
    (path / "agent.py").write_text(AGENT)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def plan_for(cc: str, env: str = ""):  # type: ignore[no-untyped-def]
    agents = [{"name": f"ag{i}", "command": f"{env}{sys.executable} agent.py ag{i} {i}"} for i in range(3)]
    return parse_plan({"cc": cc, "agents": agents}, "test")


def test_mtpo_equals_serial_and_is_clearly_faster(workspace: Path) -> None:
    serial_ws = workspace.with_name(workspace.name + "-serial")
    shutil.copytree(workspace, serial_ws)
    try:
        serial = run_plan(plan_for("serial"), RunOptions(serial_ws, time_limit=90))
        mtpo = run_plan(plan_for("mtpo"), RunOptions(workspace, time_limit=90))
        assert serial.ok, serial.failure_lines()
        assert mtpo.ok, mtpo.failure_lines()
        assert (serial_ws / "slots.txt").read_text() == SERIAL
        assert (workspace / "slots.txt").read_text() == SERIAL
        assert mtpo.wall_time < 0.75 * serial.wall_time, (mtpo.wall_time, serial.wall_time)
    finally:
        shutil.rmtree(serial_ws, ignore_errors=True)


def test_no_control_loses_updates(workspace: Path, tmp_path: Path) -> None:
    report = run_plan(plan_for("none", env=f"BARRIER={tmp_path} "), RunOptions(workspace, time_limit=90))
    assert report.ok, report.failure_lines()
    final = (workspace / "slots.txt").read_text()
    assert final != SERIAL
    assert sum(f"slot{i}: ag{i}" in final for i in range(3)) < 3  # somebody's update is gone
