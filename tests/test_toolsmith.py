"""The ToolSmith: recurring raw command lines in a real run's journal become a declared
tool (footprint, snapshot inverse, match pattern), checked in a scratch copy, registered
in the workspace's library; the running daemon then lifts the next such line onto it, so
it gets a precise footprint instead of `*`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coagent_cli.daemon.client import Client
from coagent_cli.daemon.run import DaemonSettings, Tokens, paths_for, start_detached, stop_daemon
from coagent_cli.journal import Journal
from coagent_cli.tools.loader import load_spec_file
from toolsmith import Sample, ToolSmith, generalise
from toolsmith.mine import simple_argv

pytestmark = pytest.mark.timeout(120)

STAMP = 'printf "%s\\n" "$2" >> "$1"\n'  # a project script the classifier cannot see into
LINES = ["sh stamp.sh notes/a.txt alpha", "sh stamp.sh notes/b.txt beta", "sh stamp.sh notes/c.txt gamma"]


@pytest.fixture
def ws() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tsm", dir="/tmp"))
    (root / "stamp.sh").write_text(STAMP)
    (root / "notes").mkdir()
    yield root
    stop_daemon(root)
    shutil.rmtree(root, ignore_errors=True)


def run_lines(ws: Path, agent: str, lines: list[str]) -> list[list[str]]:
    """Run each line as a gated agent does; the write footprint the daemon gave each."""
    tokens = Tokens.load(paths_for(ws).tokens)
    footprints = []
    with Client(str(paths_for(ws).socket), timeout=30) as c:
        c.hello(agent=agent, token=tokens.agents[agent])
        for line in lines:
            grant = c.begin_op(command=line, cwd=str(ws))
            if grant["action"] == "run":
                done = subprocess.run(["bash", "-c", line], cwd=ws, capture_output=True, timeout=20)
                c.end_op(grant["op"], done.returncode)
            footprints.append(_writes_of(ws, grant["op"]))
    return footprints


def _writes_of(ws: Path, op: int) -> list[str]:
    with Journal.open(paths_for(ws).journal) as journal:
        return next(e.payload["op"]["writes"] for e in journal.timeline()
                    if e.kind == "op_requested" and e.op_id == op)


def test_recurring_raw_lines_become_a_tool_the_daemon_lifts_them_onto(ws: Path) -> None:
    start_detached(DaemonSettings(ws, "mtpo", ["a0", "a1"]))
    assert run_lines(ws, "a0", LINES) == [["*"]] * 3  # raw: they serialize everything
    size = library_size(ws)

    outcomes = ToolSmith(ws).once()
    assert [(o.name, o.status) for o in outcomes] == [("ts_stamp_sh", "registered")], outcomes
    (spec,) = load_spec_file(Path(outcomes[0].detail))
    assert spec.command == "sh stamp.sh {path} {value}"
    assert spec.writes == ["file:{path}"] and "file:stamp.sh" in spec.reads
    assert spec.match == ["sh stamp.sh {path} {value}"] and spec.inverse == "snapshot"
    assert Path(outcomes[0].detail).read_text().startswith("# Written by the coagent ToolSmith")

    deadline = time.monotonic() + 20  # the daemon's watcher reloads the library
    while library_size(ws) <= size:
        assert time.monotonic() < deadline, "the daemon never loaded the new tool"
        time.sleep(0.1)
    assert run_lines(ws, "a1", ["sh stamp.sh notes/d.txt delta"]) == [["file:notes/d.txt"]]
    assert (ws / "notes" / "d.txt").read_text() == "delta\n"
    assert ToolSmith(ws).once() == []  # lifted lines are not mined again


def library_size(ws: Path) -> int:
    tokens = Tokens.load(paths_for(ws).tokens)
    with Client(str(paths_for(ws).socket), timeout=10) as admin:
        admin.hello(token=tokens.admin, role="admin")
        return int(admin.status()["snapshot"]["library_size"] or 0)


def test_the_cli_dry_run_checks_without_registering(ws: Path) -> None:
    start_detached(DaemonSettings(ws, "mtpo", ["a0"]))
    run_lines(ws, "a0", LINES)
    done = subprocess.run([sys.executable, "-m", "coagent_cli", "toolsmith", "-w", str(ws), "--dry-run", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (outcome,) = json.loads(done.stdout)
    assert outcome["status"] == "validated" and outcome["lines"] and outcome["spec"]["writes"] == ["file:{path}"]
    assert not list((ws / ".coagent" / "tools").glob("*.yaml"))


def test_a_workspace_without_a_run_is_one_clear_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "coagent_cli", "toolsmith", "-w", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "journal" in done.stderr


# ---------------------------------------------------------------- generalising (pure)


def sample(i: int, line: str, writes: set[str], existing: set[str] = frozenset()) -> Sample:  # type: ignore[assignment]
    argv = simple_argv(line)
    assert argv is not None
    return Sample(i, "a", line, argv, frozenset(writes), frozenset(existing))


def test_a_tool_needs_enough_distinct_lines() -> None:
    same = [sample(i, "python3 s.py x.txt", {"x.txt"}) for i in range(5)]
    assert generalise(same) == []
    two = [sample(1, "python3 s.py a.txt", {"a.txt"}), sample(2, "python3 s.py b.txt", {"b.txt"})]
    assert generalise(two) == [] and len(generalise(two, min_count=2)) == 1


def test_writes_nothing_explains_are_refused_with_the_reason() -> None:
    cands = generalise([sample(1, "mk a", {"x/1"}), sample(2, "mk b", {"y/2"}), sample(3, "mk c", {"z/3"})])
    assert cands[0].spec is None and "neither its arguments nor a shared directory" in (cands[0].problem or "")


def test_writes_under_one_directory_become_a_dir_key() -> None:
    cands = generalise([sample(1, "gen one", {"build/1.o"}), sample(2, "gen two", {"build/2.o"}),
                        sample(3, "gen three", {"build/x/3.o"})])
    assert cands[0].spec is not None and cands[0].spec["writes"] == ["dir:build"]
    assert cands[0].spec["params"] == {"value": {"type": "string"}}


def test_a_differing_option_is_not_generalised() -> None:
    cands = generalise([sample(1, "fmt -a f.txt", {"f.txt"}), sample(2, "fmt -b f.txt", {"f.txt"}),
                        sample(3, "fmt -c f.txt", {"f.txt"})])
    assert cands[0].spec is None and "option" in (cands[0].problem or "")


def test_writes_below_a_path_param_become_its_dir_key() -> None:
    cands = generalise([sample(1, "unpack out/a", {"out/a/1", "out/a/2"}, {"out/a"}),
                        sample(2, "unpack out/b", {"out/b/1"}), sample(3, "unpack out/c", {"out/c/9"})])
    assert cands[0].spec is not None and cands[0].spec["writes"] == ["dir:{path}"]


@pytest.mark.parametrize("line", ["a | b", "a > f", "a; b", "a && b", "echo $HOME", "ls *.py", "X=1 cmd",
                                  "echo `id`", "cat <(ls)", ""])
def test_only_simple_commands_are_mined(line: str) -> None:
    assert simple_argv(line) is None


# ---------------------------------------------------------------- alongside a run


BARRIER = ("for i in $(seq 200); do [ -e .coagent/tools/ts_stamp_sh.yaml ] && break; sleep 0.1; done; "
           "sleep 1")  # (bounded) until the ToolSmith has written its tool and the daemon reloaded


def stamp_script(agent: str, words: list[str], shared_at: int) -> list[dict[str, object]]:
    steps: list[dict[str, object]] = []
    for i, word in enumerate(words):
        path = "notes/shared.txt" if i == shared_at else f"notes/{agent}-{i}.txt"
        if i == len(words) // 2:
            steps.append({"bash": BARRIER})
        steps += [{"think": 0.1}, {"bash": f"sh stamp.sh {path} {word}"}]
    return steps


def test_a_plan_with_the_toolsmith_lifts_later_lines_and_ends_as_the_serial_run(ws: Path) -> None:
    from coagent_cli.run.launcher import RunOptions, run_plan
    from coagent_cli.run.plan import parse_plan

    words = ["one", "two", "three", "four", "five", "six", "seven", "eight"]
    plan = parse_plan({"toolsmith": {"every": 0.2, "min_count": 3}, "agents": [
        {"name": "a0", "task": "stamp", "script": stamp_script("a0", words, shared_at=7)},
        {"name": "a1", "task": "stamp", "script": stamp_script("a1", words, shared_at=1)}]}, "test plan")
    report = run_plan(plan, RunOptions(ws))
    assert report.ok, report.failure_lines()
    forged = [t for t in report.tools_forged if t["status"] == "registered"]
    assert [t["name"] for t in forged] == ["ts_stamp_sh"], report.tools_forged
    with Journal.open(paths_for(ws).journal) as journal:
        footprint = {e.payload["op"]["label"]: e.payload["op"]["writes"] for e in journal.timeline()
                     if e.kind == "op_requested" and e.payload.get("core") == "event"}
    assert footprint["sh stamp.sh notes/a0-0.txt one"] == ["*"]  # raw before the tool existed
    for agent in ("a0", "a1"):  # lifted after it: a precise footprint
        assert footprint[f"sh stamp.sh notes/{agent}-6.txt seven"] == [f"file:notes/{agent}-6.txt"], footprint
    assert (ws / "notes" / "shared.txt").read_text() == "eight\ntwo\n"  # a0's stamp first: rank order
    assert (ws / "notes" / "a1-7.txt").read_text() == "eight\n"


def test_watch_mode_registers_once_and_says_so(ws: Path) -> None:
    start_detached(DaemonSettings(ws, "mtpo", ["a0"]))
    run_lines(ws, "a0", LINES)
    done = subprocess.run([sys.executable, "-m", "coagent_cli", "toolsmith", "-w", str(ws), "--watch", "0.1",
                           "--rounds", "3"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("+ ts_stamp_sh: registered (3 lines like `sh stamp.sh"), said
    assert [p.name for p in (ws / ".coagent" / "tools").glob("*.yaml")] == ["ts_stamp_sh.yaml"]
