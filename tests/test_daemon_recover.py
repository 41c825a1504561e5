"""`coagent recover` after SIGKILL: raw commands cut off mid-run are reverted from their
pre-run snapshot, and a run killed at a random point, recovered and finished ends in
the serial result of its agents.

A raw command's effect is open from the executor's prepare() to its finish(): while an
agent runs a granted command line (execute), or while the daemon re-runs one (redo on a
changed base). Both are killed here with the command still writing."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from coagent_cli.daemon.client import Client
from coagent_cli.daemon.run import DaemonSettings, Tokens, paths_for, recover, start_detached
from coagent_cli.errors import CoagentError
from coagent_cli.journal import Journal
from test_daemon_crash import _wait_dead, make_tree, tree_state

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    """(workspace, control directory outside it for the command's markers)."""
    ws = Path(tempfile.mkdtemp(prefix="cr", dir="/tmp"))
    ctl = Path(tempfile.mkdtemp(prefix="crctl", dir="/tmp"))
    make_tree(ws)
    yield ws, ctl
    shutil.rmtree(ws, ignore_errors=True)
    shutil.rmtree(ctl, ignore_errors=True)


def slow_line(ctl: Path) -> str:
    """A raw command (python3 -c: footprint `*`) that writes, then, when `ctl/slow`
    exists, says so and sleeps before it writes more: the moment to kill the daemon."""
    code = (
        "import os,time,shutil;"
        "open('shared.txt','a').write('first half\\n');"
        "os.remove('gone.txt');"
        "shutil.rmtree('sub');"
        "os.makedirs('made/deep');open('made/deep/n.txt','w').write('n\\n');"
        f"slow=os.path.exists('{ctl}/slow');"
        f"slow and open('{ctl}/started','w').close();"
        "slow and time.sleep(0.4);"
        "open('shared.txt','a').write('second half\\n');"
        "open('late.txt','w').write('late\\n');"
        f"open('{ctl}/done','w').close()"
    )
    return f'python3 -c "{code}"'


MIXED_LINE = "mkdir -p made/deep && echo z > made/deep/z.txt && sleep 0.4 && echo y > made/deep/y.txt"
"""Declared file keys (exact before-images) beside a dir: key (the snapshot). It may
write nothing outside the workspace, so its own files are its markers."""


def wait_for_orphans(ws: Path, timeout: float = 20.0) -> None:
    """Wait until no process works in `ws`: a command the killed daemon was re-running
    (a redo) lives on in its own session, and recover must not race its last writes."""
    deadline = time.monotonic() + timeout
    while any(_works_in(pid, ws) for pid in os.listdir("/proc") if pid.isdigit()):
        assert time.monotonic() < deadline, f"a process still works in {ws}"
        time.sleep(0.02)


def _works_in(pid: str, ws: Path) -> bool:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return cwd == str(ws) or cwd.startswith(f"{ws}/")


def wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


# ---------------------------------------------------------------- one raw command

EXECUTOR_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from coagent_cli.executor.protocol import OpRequest, ShellCommand
    from coagent_cli.executor.workspace import WorkspaceExecutor
    from coagent_cli.journal import BlobStore, Journal

    ws, ctl, mode, line = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    state = ws / ".coagent"
    journal = Journal.open(state / "journal.db")
    ex = WorkspaceExecutor(ws, state, journal=journal, blobs=BlobStore(state / "blobs"), library=None)
    ex.register(OpRequest(1, "a", ShellCommand(line, ws)))
    if mode == "redo":
        assert ex.run(1).exit_status == 0  # quick: no ctl/slow yet
        ex.undo(1)
        (ws / "notes.md").write_text("a new base\\n")  # base changed: the redo re-runs the line
        (ctl / "done").unlink()
    (ctl / "slow").touch()
    ex.run(1) if mode == "execute" else ex.redo(1, True)
    raise SystemExit("not killed in time")
""")


@pytest.mark.parametrize(("mode", "mixed"), [("execute", False), ("redo", False), ("execute", True)])
def test_raw_command_cut_off_in_the_executor_is_reverted(
        dirs: tuple[Path, Path], mode: str, mixed: bool) -> None:
    """The process performing a raw command (a first run, or a redo's re-run) is
    SIGKILLed while the command sleeps between its writes; the command then finishes
    its writes, orphaned. recover puts back every path the command touched."""
    ws, ctl = dirs
    launch = tree_state(ws)
    line, late = (MIXED_LINE, "made/deep/y.txt") if mixed else (slow_line(ctl), "late.txt")
    started, done = (ws / "made/deep/z.txt", ws / late) if mixed else (ctl / "started", ctl / "done")
    child = subprocess.Popen([sys.executable, "-c", EXECUTOR_SCRIPT, str(ws), str(ctl), mode, line])
    try:
        wait_for(started)
    finally:
        child.kill()
        child.wait(10)
    wait_for(done)  # the orphaned command wrote its second half
    wait_for_orphans(ws)
    assert (ws / late).exists()
    report = recover(ws)
    expected = dict(launch)
    if mode == "redo":
        expected["notes.md"] = ("file", b"a new base\n", 0o644)
    assert tree_state(ws) == expected
    assert report.unrevertable == []
    assert any(r.startswith(f"op 1 {mode}") and late in r for r in report.reverted)
    with Journal.open(paths_for(ws).journal) as journal:
        assert journal.open_effects() == []


def test_recover_reverts_the_command_an_agent_ran_when_the_daemon_died(dirs: tuple[Path, Path]) -> None:
    """Through the daemon: the agent is granted a raw command and runs it; the daemon is
    killed while the command sleeps, so the execute effect is never ended."""
    ws, ctl = dirs
    launch = tree_state(ws)
    info = start_detached(DaemonSettings(ws, "mtpo", ["a0"]))
    token = Tokens.load(paths_for(ws).tokens).agents["a0"]
    line = slow_line(ctl)
    (ctl / "slow").touch()
    with Client(info.socket, timeout=10) as agent:
        agent.hello(agent="a0", token=token)
        grant = agent.begin_op(command=line, cwd=str(ws))
        assert grant["action"] == "run"
        command = subprocess.Popen(["bash", "-c", line], cwd=ws)
        wait_for(ctl / "started")
        os.kill(info.pid, 9)
        _wait_dead(info.pid)
        assert command.wait(20) == 0
        with pytest.raises(CoagentError):
            agent.end_op(grant["op"], 0)
    report = recover(ws)
    assert tree_state(ws) == launch
    assert report.unrevertable == []
    assert any(r.startswith(f"op {grant['op']} execute") for r in report.reverted)


# ---------------------------------------------------------------- killed, recovered, finished

AGENTS = ["a0", "a1", "a2"]


def _py(code: str) -> str:
    return f'python3 -c "{code}"'


# The agents append to one shared log.txt (through declared file writes and raw python3
# lines that write `*`), so the serial result depends on their order, and their reads
# cross: the controller undoes and redoes ops (re-running the raw ones) while the daemon
# may be killed. After recover the journal says which steps are in effect (an op undone
# for a reorder is redone by recover itself); the others (the step each agent was
# running, and those it never got to) are issued again on a daemon started on the
# recovered run, which must still order them under the later agents' old writes. A lost, doubled or
# misordered step shows in log.txt.
SCRIPTS = {
    "a0": ["echo a0 >> log.txt", _py("open('log.txt','a').write('py0\\n')"), "cat a1.txt",
           "mkdir -p d0/deep && echo z >> d0/deep/z.txt", "rm -f gone.txt", "echo a0-2 >> log.txt"],
    "a1": ["cat log.txt", _py("open('log.txt','a').write('py1\\n')"), "echo a1 >> a1.txt",
           "rm -rf sub", "echo a1-2 >> log.txt"],
    "a2": ["echo a2 >> log.txt", "cat log.txt", _py("import os; os.makedirs('d2', exist_ok=True); "
                                                    "open('d2/x','a').write('x\\n')"),
           "echo a2-2 >> notes.md"],
}


def serial_result() -> dict[str, object]:
    ws = Path(tempfile.mkdtemp(prefix="crs", dir="/tmp"))
    try:
        make_tree(ws)
        for agent in AGENTS:
            for line in SCRIPTS[agent]:
                subprocess.run(["bash", "-c", line], cwd=ws, capture_output=True, timeout=10)
        return tree_state(ws)
    finally:
        shutil.rmtree(ws, ignore_errors=True)


def run_steps(socket: str, token: str, name: str, ws: Path, steps: list[str],
              rng: random.Random, *, finish: bool) -> None:
    with Client(socket, timeout=20) as c:
        c.hello(agent=name, token=token)
        for line in steps:
            time.sleep(rng.uniform(0, 0.02))
            grant = c.begin_op(command=line, cwd=str(ws))
            if grant["action"] == "run":
                done = subprocess.run(["bash", "-c", line], cwd=ws, capture_output=True, timeout=10)
                c.end_op(grant["op"], done.returncode)
        if finish:
            c.inbox()
            c.finish()


def in_effect(journal: Journal, op_id: int) -> bool:
    """Whether the workspace holds the op's writes, from its effects: an execute or a
    successful redo puts them there, an undo takes them away; an effect recover reverted
    (or a redo that failed and was reverted) changed nothing."""
    applied = False
    for effect in journal.effects(op_id):
        outcome = effect.outcome or ""
        if outcome == "reverted by recover" or outcome.startswith("reverted"):
            continue
        applied = effect.action != "undo"
    return applied


def remaining_steps(ws: Path) -> dict[str, list[str]]:
    """Per agent, the steps of its script whose writes the recovered workspace lacks
    (read-only steps never count as done: running them again changes nothing)."""
    left: dict[str, list[str]] = {}
    with Journal.open(paths_for(ws).journal) as journal:
        for agent in AGENTS:
            requested = [e.op_id for e in journal.timeline(agent) if e.kind == "op_requested"]
            done = [op is not None and in_effect(journal, op) for op in requested]
            done += [False] * (len(SCRIPTS[agent]) - len(done))
            left[agent] = [line for line, ok in zip(SCRIPTS[agent], done, strict=True) if not ok]
    return left


def kill_recover_finish(seed: int, expected: dict[str, object]) -> None:
    rng = random.Random(seed)
    ws = Path(tempfile.mkdtemp(prefix="crk", dir="/tmp"))
    try:
        make_tree(ws)
        info = start_detached(DaemonSettings(ws, "mtpo", AGENTS))
        tokens = Tokens.load(paths_for(ws).tokens).agents
        run_agents(info.socket, tokens, ws, dict(SCRIPTS), seed, finish=False,
                   kill=lambda: (time.sleep(rng.uniform(0.05, 0.6)), os.kill(info.pid, 9)))
        _wait_dead(info.pid)
        wait_for_orphans(ws)
        report = recover(ws)
        assert report.problems == [], (seed, report.problems)
        left = remaining_steps(ws)
        info = start_detached(DaemonSettings(ws, "mtpo", []))  # the run continues
        run_agents(info.socket, tokens, ws, left, seed + 1000, finish=True)
        with Client(info.socket, timeout=20) as admin:
            admin.hello(token=Tokens.load(paths_for(ws).tokens).admin, role="admin")
            admin.shutdown()
        _wait_dead(info.pid)
        final = tree_state(ws)
        assert final == expected, (f"seed {seed}, re-issued {left}: "
                                   f"{sorted(set(final.items()) ^ set(expected.items()))[:6]}")
    finally:
        shutil.rmtree(ws, ignore_errors=True)


def run_agents(socket: str, tokens: dict[str, str], ws: Path, steps: dict[str, list[str]],
               seed: int, *, finish: bool, kill: Callable[[], object] | None = None) -> None:
    """The agents in threads; with `kill`, the daemon dies under them (errors expected)."""
    errors: list[BaseException] = []

    def agent(i: int, name: str) -> None:
        try:
            run_steps(socket, tokens[name], name, ws, steps[name], random.Random(seed * 10 + i),
                      finish=finish)
        except CoagentError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(i, n)) for i, n in enumerate(AGENTS)]
    for t in threads:
        t.start()
    if kill is not None:
        kill()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "an agent hung"
    assert kill is not None or not errors, errors


TRIALS = 6


def test_killed_run_recovered_and_finished_equals_the_serial_result() -> None:
    expected = serial_result()
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(kill_recover_finish, range(TRIALS), [expected] * TRIALS))


@pytest.mark.parametrize("mode", ["execute", "redo"])
def test_recover_kills_a_command_the_dead_process_left_running(dirs: tuple[Path, Path], mode: str) -> None:
    """recover is called at once, while the orphaned command still sleeps before its
    second half: it must kill the command first, or the command writes after recover."""
    ws, ctl = dirs
    launch = tree_state(ws)
    child = subprocess.Popen([sys.executable, "-c", EXECUTOR_SCRIPT, str(ws), str(ctl), mode, slow_line(ctl)])
    try:
        wait_for(ctl / "started")
    finally:
        child.kill()
        child.wait(10)
    report = recover(ws)  # no waiting for the orphan
    assert any("killed the still-running command of op 1" in r for r in report.reverted)
    time.sleep(0.8)  # longer than the command's remaining sleep
    assert not (ctl / "done").exists() and not (ws / "late.txt").exists()
    expected = dict(launch)
    if mode == "redo":
        expected["notes.md"] = ("file", b"a new base\n", 0o644)
    assert tree_state(ws) == expected
