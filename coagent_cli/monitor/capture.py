"""A dashboard capture from a real `coagent demo` run, for the README.

    python -m coagent_cli.monitor.capture > docs/monitor-demo.txt

Runs the demo's MTPO half (the sample repository, the three scripted agents, the real
daemon and shells) with `run_plan` in a background thread, attaches a monitor to its
daemon, and renders the dashboard (100 columns, no color) from the daemon's `status`
snapshot, with the events seen so far as the feed, at the first moment the protocol has
visibly acted (a notice, an undo or a redo) while an agent is still at work. Unlike
docs/monitor-sample.txt (a made-up snapshot, checked by a test), this one differs from
run to run: times, op numbers and event order are whatever the run did.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from coagent_cli.daemon.client import AsyncClient
from coagent_cli.daemon.run import paths_for
from coagent_cli.errors import ExecutionError
from coagent_cli.monitor.cli import find_socket, monitor_token
from coagent_cli.monitor.render import dashboard
from coagent_cli.monitor.view import MonitorState
from coagent_cli.run.demo import demo_plan, make_sample_repo
from coagent_cli.run.launcher import RunOptions, run_plan

__all__ = ["Capture", "capture_demo", "document", "interesting", "render_text"]

WIDTH = 100
POLL_EVERY = 0.2             # seconds between status polls while waiting for the moment
DAEMON_TIMEOUT = 30.0        # seconds for the demo's daemon to come up
RUN_TIMEOUT = 120.0          # seconds for the whole demo run
PROTOCOL_ACTS = frozenset({"notice", "op_undone", "op_redone"})


@dataclass
class Capture:
    text: str                # the dashboard, rendered
    at: float                # seconds after the daemon came up when the snapshot was taken
    think: float             # the demo's think scale


def interesting(state: MonitorState) -> bool:
    """The protocol has acted (a notice, undo or redo in the feed; the daemon's snapshot
    has no totals yet) and some agent is still at work."""
    acted = any(e.kind in PROTOCOL_ACTS for e in state.events)
    return acted and any(a.state not in ("finished", "crashed") for a in state.snapshot.agents)


def render_text(state: MonitorState, now: float, width: int = WIDTH) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(dashboard(state.snapshot, state.events, now=now))
    return console.export_text()


async def _watch(workspace: Path) -> tuple[MonitorState, float]:
    """Follow the run; return the state at the interesting moment (or the last one seen
    before the run ended) and the time it was taken."""
    socket_path = find_socket(workspace, env={})
    token = monitor_token(socket_path, workspace, env={})
    stream = await AsyncClient.connect(socket_path, timeout=5.0)
    poller = await AsyncClient.connect(socket_path, timeout=5.0)
    state = MonitorState()
    try:
        for client in (stream, poller):
            await client.hello(role="monitor", token=token)
        consumer = asyncio.create_task(_consume(stream, state))
        try:
            return await _moment(poller, state, consumer)
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
    finally:
        await asyncio.gather(stream.close(), poller.close())


async def _consume(stream: AsyncClient, state: MonitorState) -> None:
    events = stream.subscribe()
    try:
        async for event in events:
            state.feed(event)
            if state.ended:
                return
    finally:
        await events.aclose()


async def _moment(poller: AsyncClient, state: MonitorState,
                  consumer: asyncio.Task[None]) -> tuple[MonitorState, float]:
    last: tuple[MonitorState, float] | None = None
    while not consumer.done():
        snapshot = (await poller.status()).snapshot
        now = time.time()
        state.replace(snapshot)
        last = _copy(state), now
        if interesting(state):
            return last
        await asyncio.sleep(POLL_EVERY)
    if last is None:
        raise ExecutionError("the demo ended before a snapshot was taken", code="no_capture")
    return last


def _copy(state: MonitorState) -> MonitorState:
    copy = MonitorState(state.snapshot, max_events=state.events.maxlen or 1)
    copy.events.extend(state.events)
    return copy


def capture_demo(think: float = 1.0, width: int = WIDTH) -> Capture:
    """Run the demo's MTPO half and capture its dashboard at an interesting moment."""
    base = Path(tempfile.mkdtemp(prefix="coagent-capture-", dir="/tmp" if Path("/tmp").is_dir() else None))
    try:
        workspace = make_sample_repo(base / "sample")
        errors: list[BaseException] = []
        runner = threading.Thread(target=_run, args=(workspace, think, errors), daemon=True)
        runner.start()
        _wait_for_daemon(workspace, runner)
        up = time.time()
        state, at = asyncio.run(asyncio.wait_for(_watch(workspace), RUN_TIMEOUT))
        runner.join(RUN_TIMEOUT)
        if errors:
            raise errors[0]
        if runner.is_alive():
            raise ExecutionError("the demo run did not end in time", code="run_timeout")
        return Capture(render_text(state, at, width), at - up, think)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run(workspace: Path, think: float, errors: list[BaseException]) -> None:
    try:
        run_plan(demo_plan(think), RunOptions(workspace, cc="mtpo", time_limit=RUN_TIMEOUT))
    except BaseException as exc:  # re-raised by capture_demo on its own thread
        errors.append(exc)


def _wait_for_daemon(workspace: Path, runner: threading.Thread) -> None:
    info = paths_for(workspace).info
    deadline = time.monotonic() + DAEMON_TIMEOUT
    while not info.exists():
        if not runner.is_alive() or time.monotonic() > deadline:
            raise ExecutionError("the demo's daemon did not start", code="start_failed")
        time.sleep(0.05)


def document(capture: Capture) -> str:
    """The capture as docs/monitor-demo.txt holds it: a header line, then the dashboard."""
    header = (f"Capture of a real `coagent demo` run (its MTPO half, think scale {capture.think:g}): "
              f"the daemon's status snapshot {capture.at:.1f}s in, rendered by "
              f"`python -m coagent_cli.monitor.capture`.")
    return f"{header}\n\n{capture.text}"


if __name__ == "__main__":
    print(document(capture_demo()), end="")
