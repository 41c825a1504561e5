"""The scripted agents' repair against the real daemon: retract from the first step a notice
names, then replay (the simulator's rule). Re-reading instead would read the agent's own
later writes, already re-applied by the daemon; re-running a raw read-modify-write line the
daemon already re-ran on the new base would apply it twice.

Each scenario runs under mtpo with the later-ranked agent going first, and is compared with
the same plan under `serial`. Think times are short (tenths of seconds)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from coagent_cli.agents import Agent, FakeClock, LocalEnvironment, Notice, ScriptedModel
from coagent_cli.run.launcher import RunOptions, RunReport, run_plan
from coagent_cli.run.plan import parse_plan

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def workspaces() -> Iterator[tuple[Path, Path]]:
    roots = [Path(tempfile.mkdtemp(prefix=f"cgrep{cc}", dir="/tmp")) for cc in ("m", "s")]
    yield roots[0], roots[1]
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


def run(workspace: Path, cc: str, files: dict[str, str], agents: list[dict[str, Any]]) -> RunReport:
    for rel, text in files.items():
        (workspace / rel).write_text(text)
    plan = parse_plan({"cc": cc, "agents": agents}, "test")
    report = run_plan(plan, RunOptions(workspace, cc=cc, time_limit=60))
    assert report.ok, report.failure_lines()
    return report


def read(workspace: Path, *names: str) -> dict[str, str | None]:
    return {n: (workspace / n).read_text() if (workspace / n).exists() else None for n in names}


def agent(name: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "task": f"{name}'s part", "script": list(steps)}


# ---------------------------------------------------------------- a copy out and back


def test_copy_out_and_back_after_an_earlier_agents_change_equals_serial(
        workspaces: tuple[Path, Path]) -> None:
    """bob copies team.txt aside, edits the copy, copies it back; alice (rank 0) appends to
    team.txt after bob is done. Re-reading team.txt would read bob's own copy-back (the
    daemon re-applied it above alice's line); bob retracts and replays instead."""
    files = {"team.txt": "lead\n"}
    agents = [agent("alice", {"think": 0.8}, {"bash": "echo alice >> team.txt"}),
              agent("bob", {"bash": "cp team.txt bob.base"}, {"bash": "echo bob >> bob.base"},
                    {"think": 0.2}, {"bash": "cp bob.base team.txt"})]
    mtpo_ws, serial_ws = workspaces
    report = run(mtpo_ws, "mtpo", files, agents)
    run(serial_ws, "serial", files, agents)
    assert read(mtpo_ws, "team.txt", "bob.base") == read(serial_ws, "team.txt", "bob.base")
    assert read(mtpo_ws, "team.txt")["team.txt"] == "lead\nalice\nbob\n"
    assert report.agents[1].notices >= 1


# ---------------------------------------------------------------- a raw counter


def test_raw_read_modify_write_counter_ends_at_plus_two(workspaces: tuple[Path, Path]) -> None:
    """Both add one with a raw line; bob (rank 1) goes first. The daemon re-runs bob's line
    on alice's value; bob's repair retracts it before replaying, so it counts once."""
    bump = {"bash": "n=$(cat c); echo $((n + 1)) > c"}
    files = {"c": "0\n"}
    agents = [agent("alice", {"think": 0.8}, bump), agent("bob", bump)]
    mtpo_ws, serial_ws = workspaces
    report = run(mtpo_ws, "mtpo", files, agents)
    run(serial_ws, "serial", files, agents)
    assert read(mtpo_ws, "c") == read(serial_ws, "c") == {"c": "2\n"}
    assert report.agents[1].notices >= 1


# ---------------------------------------------------------------- the rule, offline


class RetractingEnvironment(LocalEnvironment):
    """LocalEnvironment that records retracts (it cannot undo: the test checks the ids)."""

    def __init__(self, workspace: Path) -> None:
        super().__init__(workspace)
        self.retracted: list[list[int]] = []

    def retract(self, op_ids: Sequence[int]) -> None:
        self.retracted.append(list(op_ids))


STEPS = [{"bash": "echo a > a"}, {"bash": "cat a"}, {"think": 1.0}, {"bash": "echo b > b"}]


def test_retract_from_the_first_named_step_then_replay(tmp_path: Path) -> None:
    env, clock = RetractingEnvironment(tmp_path), FakeClock()
    model = ScriptedModel(STEPS, clock=clock)
    agent = Agent("a1", "t", model=model, env=env, clock=clock)
    agent.run()
    agent.resume([Notice("file:a", "a0", steps=(2,)), Notice("file:b", "a0", kind="write_reordered",
                                                             steps=(1,))])
    assert env.retracted == [[2, 3]] and model.repairs == 1
    assert [op.text for op in env.ops[3:]] == ["cat a", "echo b > b"]
    assert clock.sleeps == [1.0, 1.0]
    agent.resume([Notice("file:a", "a0", steps=(2,))])  # names a retracted op: nothing to do
    assert env.retracted == [[2, 3]] and model.repairs == 1 and len(env.ops) == 5


@pytest.mark.parametrize("make_env", [LocalEnvironment, RetractingEnvironment])
def test_write_reordered_needs_no_repair(tmp_path: Path, make_env: type[LocalEnvironment]) -> None:
    env, clock = make_env(tmp_path), FakeClock()
    model = ScriptedModel(STEPS, clock=clock)
    agent = Agent("a1", "t", model=model, env=env, clock=clock)
    agent.run()
    agent.resume([Notice("file:a", "a0", kind="write_reordered", steps=(1,))])
    assert model.repairs == 0 and len(env.ops) == 3
