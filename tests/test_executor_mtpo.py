"""The MTPO core driven over WorkspaceExecutor on real files, by a small synchronous driver.

The driver does what the daemon will: turns an agent's step into an OpRequest, registers
it, feeds the core an OpRequested, performs each effect the core asks for on the real
workspace and feeds back its completion. Scripted agents repair like sim/simulator.py:
on a stale read they retract their ops from the first step that used it and replay.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

from coagent_cli.core import make_controller
from coagent_cli.core.driver import drain
from coagent_cli.core.keys import Key
from coagent_cli.core.model import (
    Action,
    AgentFinished,
    AgentRegistered,
    Change,
    Completed,
    Digest,
    Event,
    Notice,
    NoticesTaken,
    Notify,
    OpRequested,
    OpSpec,
    Refuse,
    RetractRequested,
)
from coagent_cli.executor.protocol import OpRequest, ShellCommand, ToolCall
from coagent_cli.executor.workspace import WorkspaceExecutor
from coagent_cli.journal import BlobStore, Journal
from coagent_cli.tools import ToolLibrary

pytestmark = pytest.mark.timeout(60)

Memory = dict[str, str]
Step = Callable[[Memory], tuple[ToolCall | ShellCommand, str | None]]  # action, output name


@dataclass
class Agent:
    name: str
    program: list[Step]
    pc: int = 0
    memory: Memory = field(default_factory=dict)
    snapshots: dict[int, Memory] = field(default_factory=dict)
    trajectory: list[tuple[int, int]] = field(default_factory=list)  # (step, op id)
    save_as: dict[int, str | None] = field(default_factory=dict)
    inbox: list[Notice] = field(default_factory=list)
    waiting_on: int | None = None
    finished: bool = False


class ExecutorEffects:
    """The core's effects performed by the real executor, outputs kept for the agents."""

    def __init__(self, executor: WorkspaceExecutor, outputs: dict[int, str]) -> None:
        self.ex, self.outputs = executor, outputs

    def execute(self, op_id: int, *, shadowed: bool = False) -> Mapping[Key, Change]:
        if shadowed:
            return self.ex.shadow(op_id)
        self.ex.prepare(op_id)
        result = self.ex.run(op_id, timeout=20)
        self.outputs[op_id] = result.output
        return result.writes

    def serve(self, op_id: int, sources: Mapping[Key, Digest]) -> None:
        self.outputs[op_id] = self.ex.serve(op_id, sources).output

    def undo(self, op_id: int) -> None:
        self.ex.undo(op_id)

    def redo(self, op_id: int, *, base_changed: bool) -> tuple[bool, Mapping[Key, Change], str]:
        r = self.ex.redo(op_id, base_changed)
        return r.ok, r.writes, r.reason


class Driver:
    def __init__(self, executor: WorkspaceExecutor, programs: dict[str, list[Step]]) -> None:
        self.ex = executor
        self.core = make_controller("mtpo")
        self.agents = {n: Agent(n, p) for n, p in programs.items()}
        self.outputs: dict[int, str] = {}
        self.effects = ExecutorEffects(executor, self.outputs)
        self.next_id = 0
        for rank, name in enumerate(programs):
            self.feed(AgentRegistered(name, rank))

    def feed(self, event: Event) -> None:
        drain(self.core, self.core.handle(event), self.effects, self._react)

    def _react(self, a: Action) -> list[Event]:
        if isinstance(a, Completed):
            self._completed(a.op_id)
        elif isinstance(a, Notify):
            self.agents[a.notice.agent].inbox.append(a.notice)
        elif isinstance(a, Refuse):
            raise AssertionError(f"refused: {a}")
        return []

    def _completed(self, op_id: int) -> None:
        for agent in self.agents.values():
            if agent.waiting_on == op_id:
                agent.waiting_on = None
                name = agent.save_as.get(op_id)
                if name is not None:
                    agent.memory[name] = self.outputs.get(op_id, "")

    def step(self, name: str) -> None:
        agent = self.agents[name]
        if agent.waiting_on is not None:
            return
        if agent.inbox and self._repair(agent):
            return
        if agent.pc >= len(agent.program):
            if not agent.finished:
                agent.finished = True
                self.feed(AgentFinished(name))
            return
        index = agent.pc
        agent.snapshots[index] = dict(agent.memory)
        agent.pc += 1
        action, save = agent.program[index](agent.memory)
        self.next_id += 1
        op_id = self.next_id
        fp = self.ex.register(OpRequest(op_id, name, action))
        agent.trajectory.append((index, op_id))
        agent.save_as[op_id] = save
        agent.waiting_on = op_id
        self.feed(OpRequested(OpSpec(
            op_id, name, fp.reads, fp.writes, fp.observes, fp.overwrites, fp.reversible,
            fp.servable, label=str(action))))

    def _repair(self, agent: Agent) -> bool:
        notices, agent.inbox = agent.inbox, []
        self.feed(NoticesTaken(agent.name, tuple(n.notice_id for n in notices)))
        step_of = {o: i for i, o in agent.trajectory}
        hit = [step_of[o] for n in notices if n.kind != "write_reordered"
               for o in n.steps if o in step_of]
        if not hit:
            return False
        start = min(hit)
        undo = tuple(o for i, o in agent.trajectory if i >= start)
        agent.trajectory = [(i, o) for i, o in agent.trajectory if i < start]
        agent.pc, agent.memory = start, dict(agent.snapshots[start])
        agent.finished = False
        self.next_id += 1
        agent.waiting_on = self.next_id
        self.feed(RetractRequested(self.next_id, agent.name, undo))
        return True

    def run(self, schedule: list[str], *, limit: int = 200) -> None:
        for name in schedule:
            self.step(name)
        for _ in range(limit):
            for name in self.agents:
                self.step(name)
            if self.core.quiescent and all(a.finished for a in self.agents.values()):
                return
        raise AssertionError(f"no quiescence: {self.core.snapshot()}")


def make_executor(tmp: Path, files: dict[str, str]) -> tuple[Path, WorkspaceExecutor]:
    ws = tmp / "ws"
    ws.mkdir()
    for name, text in files.items():
        (ws / name).write_text(text)
    state = ws / ".coagent"
    executor = WorkspaceExecutor(
        ws, state, journal=Journal.open(state / "journal.db"), blobs=BlobStore(state / "blobs"),
        library=ToolLibrary.for_workspace(ws, user_dir=tmp / "no-user-tools"))
    return ws, executor


def tool(name: str, save: str | None = None, **fixed: Any) -> Callable[..., Step]:
    """A step calling a tool; `derive(memory)` adds params computed from what was read."""
    def make(derive: Callable[[Memory], dict[str, Any]] = lambda m: {}) -> Step:
        return lambda m: (ToolCall(name, {**fixed, **derive(m)}, Path(".")), save)
    return make


def shell(line: str, ws: Path) -> Step:
    return lambda m: (ShellCommand(line, ws), None)


def increment(memory: Memory) -> dict[str, Any]:
    return {"content": f"{int(memory['count']) + 1}\n"}


def test_two_read_modify_writes_through_tools_equal_the_serial_result(tmp_path: Path) -> None:
    ws, ex = make_executor(tmp_path, {"count.txt": "0\n"})
    program = [tool("read_file", "count", path="count.txt")(),
               tool("write_file", path="count.txt")(increment)]
    driver = Driver(ex, {"A": list(program), "B": list(program)})
    # B (rank 1) reads and writes first; A's read is then served the order-filtered
    # version; A's write moves B's underneath; B is told, repairs, and counts again.
    driver.run(["B", "B", "A", "A"])
    assert (ws / "count.txt").read_text() == "2\n"
    stats = driver.core.stats
    assert stats.served >= 1 and stats.undos >= 1 and stats.notices >= 1
    assert ex.journal.open_effects() == []


def test_a_misplaced_raw_command_is_undone_and_reexecuted(tmp_path: Path) -> None:
    ws, ex = make_executor(tmp_path, {"log.txt": "start\n"})
    git = subprocess.run(["git", "init", "-q"], cwd=ws, capture_output=True, check=True)
    assert git.returncode == 0
    git_before = _dir_bytes(ws / ".git")
    raw = shell("python3 -c \"open('log.txt','a').write('B\\n')\"", ws)
    append = tool("append_to_file", path="log.txt", text="A\n")()
    driver = Driver(ex, {"A": [append], "B": [raw]})
    driver.run(["B", "A"])
    assert (ws / "log.txt").read_text() == "start\nA\nB\n"  # the serial order, A then B
    stats = driver.core.stats
    assert stats.undos >= 1 and stats.redos >= 1
    assert _dir_bytes(ws / ".git") == git_before


def _dir_bytes(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every directory (None) below root."""
    return {p.relative_to(root).as_posix(): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


LINES = "".join(f"line {i}\n" for i in range(1, 13))


def test_a_moved_whole_file_write_is_merged_then_repaired(tmp_path: Path) -> None:
    ws, ex = make_executor(tmp_path, {"lines.txt": LINES})
    edit_first_line = lambda m: {"content": m["text"].replace("line 1\n", "FIRST\n")}  # noqa: E731
    late = [tool("read_file", "text", path="lines.txt")(),
            tool("write_file", path="lines.txt")(edit_first_line)]
    early = [tool("replace_in_file", path="lines.txt", old="line 11\n", new="X\n")()]
    driver = Driver(ex, {"A": early, "B": late})
    driver.run(["B", "B", "A"])
    assert (ws / "lines.txt").read_text() == LINES.replace("line 1\n", "FIRST\n").replace(
        "line 11\n", "X\n")
    assert "merged" in {e.outcome for e in ex.journal.effects()}
