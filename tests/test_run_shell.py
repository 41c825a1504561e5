"""Built-in agents' `bash` is one persistent shell per agent (issue 6): `cd` and variables
carry over from line to line, the daemon still gates every line with the shell's current
directory, and no bash outlives the run."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from coagent_cli.run.launcher import RunOptions, run_plan
from coagent_cli.run.plan import parse_plan

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cgshell", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _bash_children() -> set[int]:
    """The bash processes below this one (read from /proc)."""
    parents: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name = text[text.index("(") + 1: text.rindex(")")]
        parents[int(stat.parent.name)] = (int(text[text.rindex(")") + 2:].split()[1]), name)
    mine, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, (ppid, _) in parents.items() if ppid in mine} - mine
        mine |= more
        grew = bool(more)
    return {pid for pid in mine if parents.get(pid, (0, ""))[1] == "bash"}


def test_cd_and_variables_persist_between_lines(workspace: Path) -> None:
    (workspace / "sub").mkdir()
    before = _bash_children()
    script = [{"bash": "cd sub"}, {"bash": "greeting=hello"}, {"bash": 'echo "$greeting x" > f.txt'},
              {"bash": "cd .. && pwd > where.txt"}]
    plan = parse_plan({"agents": [{"name": "alice", "task": "t", "script": script}]}, "test")
    report = run_plan(plan, RunOptions(workspace))
    assert report.ok, report.failure_lines()
    assert (workspace / "sub" / "f.txt").read_text() == "hello x\n"
    assert not (workspace / "f.txt").exists()
    assert (workspace / "where.txt").read_text() == f"{workspace}\n"
    assert _bash_children() <= before  # the agent's shell ended with the run


def test_a_line_still_running_at_the_time_limit_leaves_no_process(workspace: Path) -> None:
    before = _bash_children()
    script = [{"bash": "cd . && sleep 40"}]
    plan = parse_plan({"agents": [{"name": "alice", "task": "t", "script": script}]}, "test")
    report = run_plan(plan, RunOptions(workspace, time_limit=1))
    assert report.agents[0].status == "timed_out"
    assert _bash_children() <= before
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if _reads(p) == b"sleep\x0040\x00"]


def _reads(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
