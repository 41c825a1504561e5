"""`coagent run` killed with SIGKILL mid-run (the daemon dies with it), `coagent recover`,
then `coagent run` of the same plan again: the run continues where it was (agents the
daemon holds finished stay finished, scripted agents skip the steps that stand, a
conversation comes back with a note) and ends byte-equal to the serial run."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from coagent_cli.agents import Agent
from coagent_cli.agents.environment import Notice, Observation
from coagent_cli.agents.loop import TakenUp
from coagent_cli.agents.models import ModelReply, Usage
from coagent_cli.agents.scripted import ScriptedModel
from coagent_cli.journal import Journal
from coagent_cli.run.continuation import AgentHistory, _answer_dangling, load_histories
from coagent_cli.run.demo import compare_trees, demo_plan, demo_plan_data, make_sample_repo
from coagent_cli.run.launcher import RunOptions, run_plan

pytestmark = pytest.mark.timeout(180)

THINK = 0.3
TRIALS = 4


def coagent(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coagent_cli", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def serial_tree(base: Path) -> Path:
    serial = make_sample_repo(base / "serial")
    report = run_plan(demo_plan(THINK), RunOptions(serial, cc="serial"))
    assert report.ok, report.failure_lines()
    return serial


def kill_recover_continue(seed: int, base: Path, serial: Path) -> str:
    ws = make_sample_repo(base / f"ws{seed}")
    plan = base / f"plan{seed}.json"
    plan.write_text(json.dumps(demo_plan_data(THINK)))
    run = subprocess.Popen([sys.executable, "-m", "coagent_cli", "run", str(plan), "-w", str(ws), "--no-live"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    journal = ws / ".coagent" / "journal.db"
    for _ in range(300):  # the run has begun once its journal exists (bounded wait)
        if journal.exists() or run.poll() is not None:
            break
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.1, 1.5))
    os.kill(run.pid, signal.SIGKILL)
    run.wait(10)
    recovered = coagent("recover", "-w", str(ws))
    assert recovered.returncode == 0, recovered.stderr
    assert "warning" not in recovered.stdout, recovered.stdout
    if "can be continued" in recovered.stdout:  # else the run had ended before the kill
        again = coagent("run", str(plan), "-w", str(ws), "--no-live", "--json", str(base / f"r{seed}.json"))
        assert again.returncode == 0, (seed, again.stdout[-2000:], again.stderr[-2000:])
    differing = compare_trees(ws, serial)
    assert not differing, (seed, differing, recovered.stdout)
    return recovered.stdout


def test_a_killed_run_recovered_and_run_again_equals_the_serial_run() -> None:
    base = Path(tempfile.mkdtemp(prefix="crc", dir="/tmp"))
    try:
        serial = serial_tree(base)
        with ThreadPoolExecutor(max_workers=2) as pool:
            outputs = list(pool.map(lambda s: kill_recover_continue(s, base, serial), range(TRIALS)))
        assert sum("can be continued" in out for out in outputs) >= TRIALS // 2  # killed mid-run
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- the parts


class FakeClock:
    def now(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        pass


class FakeEnv:
    """Numbers the ops it runs; delivers a notice after a given command; 'crashes'
    (raises a non-coagent error) at a given command."""

    def __init__(self, first_op: int, *, notice_after: int | None = None, crash_at: int | None = None) -> None:
        self.next_op, self.ran, self.retracted = first_op, [], []  # type: ignore[var-annotated]
        self.notice_after, self.crash_at = notice_after, crash_at
        self._pending: list[Notice] = []

    def bash(self, command: str) -> Observation:
        if self.crash_at is not None and len(self.ran) + 1 == self.crash_at:
            raise RuntimeError("the daemon died")
        if command.startswith("refused"):  # a line the daemon turned away: no op
            self.ran.append(command)
            return Observation("error (forbidden): refused", 2)
        op, self.next_op = self.next_op, self.next_op + 1
        self.ran.append(command)
        if self.notice_after is not None and len(self.ran) == self.notice_after:
            self._pending.append(Notice("file:f", "earlier", "stale_read", "f changed", None, (op - 1,)))
        return Observation("", 0, op)

    def call_tool(self, name: str, params: Any) -> Observation:
        raise AssertionError("no tools here")

    def tools(self) -> list:  # type: ignore[type-arg]
        return []

    tools_version = 0

    def take_notices(self) -> list[Notice]:
        taken, self._pending = self._pending, []
        return taken

    def finish(self) -> None:
        pass

    def retract(self, op_ids: Any) -> None:
        self.retracted.append(list(op_ids))


def test_the_scripted_model_replays_itself_and_plays_again_what_did_not_stand() -> None:
    script = {"steps": [{"bash": "echo 1 >> f"}, {"think": 5}, {"bash": "echo 2 >> f"},
                        {"bash": "echo 3 >> f"}, {"bash": "echo 4 >> f"}]}
    first = FakeEnv(1, notice_after=2, crash_at=5)  # the notice names op 1: retract 1, 2; replay
    agent = Agent("a", "task", model=ScriptedModel(script, clock=FakeClock()), env=first, clock=FakeClock())
    with pytest.raises(RuntimeError):
        agent.run()
    assert first.ran == ["echo 1 >> f", "echo 2 >> f", "echo 1 >> f", "echo 2 >> f"]
    assert first.retracted == [[1, 2]]
    events = agent.trajectory.events
    messages = _answer_dangling([e["message"] for e in events if e["event"] == "message"], False)
    taken = TakenUp(messages, events, agent.steps, (3, 4), (), "crashed")  # op 5 (echo 3) never ran
    second = FakeEnv(6)
    again = Agent("a", "task", model=ScriptedModel(script, clock=FakeClock()), env=second,
                  clock=FakeClock(), taken_up=taken)
    assert again.run().ok
    assert second.ran == ["echo 3 >> f", "echo 4 >> f"] and second.retracted == []


def test_a_conversation_comes_back_with_every_call_answered_and_a_note(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "old"
    run_dir.mkdir(parents=True)
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]}]
    (run_dir / "a.jsonl").write_text("".join(json.dumps({"event": "message", "message": m}) + "\n" for m in msgs))
    with Journal.open(tmp_path / "j.db") as journal:
        journal.record("op_requested", {"core": "event", "op": {"op_id": 1, "agent": "a", "label": "echo x > f",
                                                                 "writes": ["file:f"]}}, op_id=1)
        journal.record("op_executed", {"core": "event", "op_id": 1, "writes": {},
                                       "recovered": "rolled back"}, op_id=1)
        journal.set_meta("launcher_run_dir", str(run_dir))
        history = load_histories(journal, ["a"])["a"]
    assert history.ops == [] and history.rolled_back == ["echo x > f"] and history.steps == 1
    assert history.messages is not None and history.messages[-1]["role"] == "tool"
    assert history.messages[-1]["tool_call_id"] == "c1"
    assert "echo x > f" in history.note() and "did NOT take effect" in history.note()


def test_a_call_answered_without_an_op_is_not_played_again() -> None:
    script = {"steps": [{"bash": "echo 1 >> f"}, {"bash": "refused line"}, {"bash": "echo 2 >> f"},
                        {"bash": "echo 3 >> f"}]}
    first = FakeEnv(1, crash_at=4)
    agent = Agent("a", "task", model=ScriptedModel(script, clock=FakeClock()), env=first, clock=FakeClock())
    with pytest.raises(RuntimeError):
        agent.run()
    events = agent.trajectory.events
    messages = _answer_dangling([e["message"] for e in events if e["event"] == "message"], False)
    second = FakeEnv(3)
    again = Agent("a", "task", model=ScriptedModel(script, clock=FakeClock()), env=second, clock=FakeClock(),
                  taken_up=TakenUp(messages, events, agent.steps, (1, 2), (), "crashed"))
    assert again.run().ok
    assert second.ran == ["echo 3 >> f"]


def test_an_agent_taken_up_keeps_its_conversation_and_reads_the_note() -> None:
    class Echo:
        name = "echo"

        def __init__(self) -> None:
            self.seen: list[list[dict]] = []  # type: ignore[type-arg]

        def query(self, messages: Any, tools: Any) -> ModelReply:
            self.seen.append([dict(m) for m in messages])
            return ModelReply("done", [], Usage(1, 1))

        def close(self) -> None:
            pass

    model = Echo()
    old = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"},
           {"role": "assistant", "content": "half way"}]
    note = AgentHistory("a", rolled_back=["echo x"]).note()
    agent = Agent("a", "task", model=model, env=FakeEnv(1), clock=FakeClock(),
                  taken_up=TakenUp(old, [{"event": "message", "message": m} for m in old], 3, (), (), note))
    assert agent.run().ok
    sent = model.seen[0]
    assert sent[:3] == old and "echo x" in sent[3]["content"] and len(sent) == 4 and agent.steps == 4
    assert [e["event"] for e in agent.trajectory.events][:3] == ["message"] * 3  # carried over


def test_an_llm_agent_of_a_killed_run_comes_back_with_its_conversation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real openai SDK in a `coagent run` subprocess against the fake server: the run
    is killed while the model 'thinks' about its second turn; the continued run's first
    request carries the whole earlier conversation and the crash note, and the step that
    had run is not run again."""
    from fake_openai import FakeOpenAI, Reply, Stall, call

    monkeypatch.setenv("COAGENT_TEST_KEY", "sk-test")
    ws = tmp_path / "ws"
    ws.mkdir()
    with FakeOpenAI(Reply(tool_calls=[call("bash", command="echo one >> f.txt")]), Stall(20),
                    Reply("all done")) as server:
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"model": "fake-gpt", "api_key_env": "COAGENT_TEST_KEY", "base_url": server.url,
                                    "agents": [{"name": "solo", "task": "append one to f.txt"}]}))
        run = subprocess.Popen([sys.executable, "-m", "coagent_cli", "run", str(plan), "-w", str(ws), "--no-live"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        for _ in range(600):  # until the second model request is in (bounded)
            if len(server.requests) >= 2 or run.poll() is not None:
                break
            time.sleep(0.05)
        assert len(server.requests) == 2, "the agent never asked for its second turn"
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
        assert coagent("recover", "-w", str(ws)).returncode == 0
        again = coagent("run", str(plan), "-w", str(ws), "--no-live")
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
        first_of_second_run = server.requests[2]["messages"]
    assert (ws / "f.txt").read_text() == "one\n"  # not run twice
    roles = [m["role"] for m in first_of_second_run]
    assert roles == ["system", "user", "assistant", "tool", "user"], roles
    assert first_of_second_run[2]["tool_calls"][0]["function"]["name"] == "bash"
    assert "interrupted" in first_of_second_run[4]["content"]


def test_a_trajectory_line_torn_by_the_crash_is_left_out(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    good = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    (run_dir / "a.jsonl").write_text("".join(json.dumps({"event": "message", "message": m}) + "\n" for m in good)
                                     + '{"event": "message", "mess')
    with Journal.open(tmp_path / "j.db") as journal:
        journal.set_meta("launcher_run_dir", str(run_dir))
        history = load_histories(journal, ["a"])["a"]
    assert history.messages == good
