"""A monitor attached to a real run, and the README's capture of a real demo run.

A monitor attached to a real run: `run_plan` with two scripted built-in agents (the real
daemon, real shells, real files) in a background thread, watched in plain mode both by
`run_view` in this process and by `coagent monitor --plain` as a subprocess. Each sees
both agents finish and ends by itself when the run does.

The agents' clock holds their first think until the monitor is attached (`GateClock`),
so the agents' ops and finishes all happen after the monitor subscribed. Until the gate
opens the daemon sees a fixed set of connections (the launcher's two, one per agent, which
checks its inbox before its first think) plus the monitors': that is how the subprocess
test knows `coagent monitor` has connected.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from coagent_cli.daemon.client import AsyncClient, Client
from coagent_cli.daemon.run import paths_for
from coagent_cli.daemon.wire import Event, Snapshot
from coagent_cli.monitor.capture import capture_demo, document
from coagent_cli.monitor.cli import find_socket, monitor_token
from coagent_cli.monitor.view import MonitorState, run_view
from coagent_cli.run.launcher import RunOptions, run_plan
from coagent_cli.run.plan import parse_plan
from coagent_cli.run.report import RunReport

pytestmark = pytest.mark.timeout(90)

AGENTS = ("alice", "bob")
GATE_TIMEOUT = 30.0        # seconds the agents wait for the monitor at most
DAEMON_TIMEOUT = 30.0      # seconds for the daemon to come up
RUN_TIMEOUT = 60.0         # seconds for the whole run once the gate is open
LAUNCHER_CONNECTIONS = 2   # the launcher's admin and directive-stream connections
AGENT_CONNECTIONS = len(AGENTS)  # each agent's one connection, made before its first think
MONITOR_CONNECTIONS = 2    # a monitor's event stream and its status poller
EXPECTED_CONNECTIONS = LAUNCHER_CONNECTIONS + AGENT_CONNECTIONS + MONITOR_CONNECTIONS


class GateClock:
    """The agents' clock: real time, but the first sleep waits until `open()` (bounded)."""

    def __init__(self) -> None:
        self.opened = threading.Event()

    def open(self) -> None:
        self.opened.set()

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        self.opened.wait(GATE_TIMEOUT)
        time.sleep(max(0.0, seconds))


class BackgroundRun:
    """run_plan in a thread; `report` once it returned, `error` if it raised."""

    def __init__(self, workspace: Path, clock: GateClock) -> None:
        plan = parse_plan({"agents": [agent(name, think) for name, think in zip(AGENTS, (0.3, 0.1), strict=True)]},
                          "the e2e plan")
        self.options = RunOptions(workspace, cc="mtpo", time_limit=RUN_TIMEOUT, clock=clock)
        self.plan = plan
        self.report: RunReport | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="e2e-run", daemon=True)

    def _main(self) -> None:
        try:
            self.report = run_plan(self.plan, self.options)
        except BaseException as exc:  # re-raised by the test, on its own thread
            self.error = exc

    def join(self, timeout: float) -> RunReport:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not end in time"
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def agent(name: str, think: float) -> dict[str, object]:
    """Think, write a file of one's own, append to a shared one, finish."""
    steps = [{"think": think}, {"bash": f"echo {name} > {name}.txt"},
             {"think": 0.1}, {"bash": f"echo {name} >> shared.txt"}]
    return {"name": name, "task": f"leave a note as {name}", "script": steps}


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cgmon", dir="/tmp"))  # short: the socket path must fit
    yield path
    shutil.rmtree(path, ignore_errors=True)


def wait_for(what: str, ready: Callable[[], bool], timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def start_run(workspace: Path, clock: GateClock) -> BackgroundRun:
    """Start the run and return once its daemon serves (socket and tokens in place)."""
    run = BackgroundRun(workspace, clock)
    run.thread.start()
    info = paths_for(workspace).info
    wait_for("the daemon", lambda: info.exists() or not run.thread.is_alive(), DAEMON_TIMEOUT)
    assert info.exists(), f"the run ended before its daemon served: {run.error!r}"
    return run


def finished_lines(output: str) -> dict[str, list[str]]:
    return {name: re.findall(rf"(?m)^#\d+ finished\s+{name}\b.*$", output) for name in AGENTS}


def assert_run_ok(report: RunReport, workspace: Path) -> None:
    assert report.ok and report.quiescent, report.failure_lines()
    for name in AGENTS:
        assert (workspace / f"{name}.txt").read_text() == f"{name}\n"
    assert sorted((workspace / "shared.txt").read_text().splitlines()) == sorted(AGENTS)


# ---------------------------------------------------------------- run_view in process


async def watch(workspace: Path, attached: Callable[[], None], console: Console) -> MonitorState:
    """What `coagent monitor` does, with a hook once the event stream is subscribed."""
    socket_path = find_socket(workspace, env={})
    token = monitor_token(socket_path, workspace, env={})
    stream = await AsyncClient.connect(socket_path, timeout=5.0)
    poller = await AsyncClient.connect(socket_path, timeout=5.0)
    try:
        for client in (stream, poller):
            await client.hello(role="monitor", token=token)
        events = stream.subscribe()
        first = await anext(events)          # the subscription's snapshot: we are attached
        assert first.kind == "snapshot"
        attached()

        async def rest() -> AsyncIterator[Event]:
            try:
                yield first
                async for event in events:
                    yield event
            finally:
                await events.aclose()

        async def poll() -> Snapshot:
            return (await poller.status()).snapshot

        return await asyncio.wait_for(run_view(rest(), console, live=False, poll=poll), RUN_TIMEOUT)
    finally:
        await asyncio.gather(stream.close(), poller.close())


def test_run_view_attached_to_a_real_run_sees_both_agents_finish_and_ends_with_it(workspace: Path) -> None:
    clock = GateClock()
    run = start_run(workspace, clock)
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None, highlight=False)
    try:
        state = asyncio.run(watch(workspace, clock.open, console))
    finally:
        clock.open()  # never leave the agents waiting for a monitor that failed
    report = run.join(RUN_TIMEOUT)
    assert_run_ok(report, workspace)
    text = out.getvalue()
    assert state.ended and state.error is None, text
    for name, lines in finished_lines(text).items():
        assert lines, f"no finish line for {name} in:\n{text}"
    assert re.search(r"(?m)^#\d+ shutdown\b", text), text
    assert {a.name: a.state for a in state.snapshot.agents} == {name: "finished" for name in AGENTS}
    assert "\x1b" not in text


# ---------------------------------------------------------------- `coagent monitor --plain`


def connections_so_far(socket_path: Path, token: str) -> int:
    """Connections the daemon accepted before this probe (it numbers them 1, 2, ...)."""
    with Client(socket_path, timeout=5.0) as probe:
        return int(probe.hello(token=token, role="monitor")["session"]) - 1


def test_coagent_monitor_plain_sees_both_agents_finish_and_exits_when_the_run_ends(workspace: Path) -> None:
    clock = GateClock()
    run = start_run(workspace, clock)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COAGENT_")}
    monitor = subprocess.Popen([sys.executable, "-m", "coagent_cli", "monitor", "--plain", "-w", str(workspace)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        socket_path = find_socket(workspace, env={})
        token = monitor_token(socket_path, workspace, env={})
        probes = 0

        def monitor_attached() -> bool:
            nonlocal probes
            others = connections_so_far(socket_path, token) - probes
            probes += 1
            return others >= EXPECTED_CONNECTIONS or monitor.poll() is not None

        wait_for("the monitor to connect", monitor_attached, GATE_TIMEOUT, every=0.1)
        time.sleep(0.5)  # from its second connection to subscribed: two local requests; margin
        clock.open()
        out, err = monitor.communicate(timeout=RUN_TIMEOUT)
    finally:
        clock.open()
        if monitor.poll() is None:
            monitor.kill()
            monitor.communicate(timeout=10)
    report = run.join(RUN_TIMEOUT)
    assert_run_ok(report, workspace)
    assert monitor.returncode == 0, err
    for name, lines in finished_lines(out).items():
        assert lines, f"no finish line for {name} in:\n{out}\n{err}"
    assert re.search(r"(?m)^#\d+ shutdown\b", out), out
    assert "\x1b" not in out
    summary = [line for line in out.splitlines() if any(name in line for name in AGENTS)
               and not line.startswith("#")]
    assert len(summary) >= len(AGENTS), out  # the final summary table has a row per agent


# ---------------------------------------------------------------- the README's demo capture


def test_capture_of_a_real_demo_run_is_a_100_column_dashboard() -> None:
    capture = capture_demo(think=0.25)
    lines = capture.text.splitlines()
    assert lines[0].startswith("╭─ coagent · mtpo · 3 agents")
    assert all(len(line) <= 100 for line in lines) and "\x1b" not in capture.text
    for name in ("alice", "bob", "carol"):
        assert any(f" {name} " in line for line in lines), capture.text
    assert any(re.search(r"#\d+ +(applied|undo|redo|notice)", line) for line in lines), capture.text
    assert document(capture).startswith("Capture of a real `coagent demo` run")
    docs = Path(__file__).resolve().parents[1] / "docs" / "monitor-demo.txt"
    assert docs.read_text(encoding="utf-8").startswith("Capture of a real `coagent demo` run")
