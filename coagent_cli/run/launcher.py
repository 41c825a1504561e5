"""Launch a run plan: the daemon in process, the agents around it, until quiescence.

    Launcher(plan, RunOptions(...)).run() -> RunReport

The daemon (`serve_daemon`) runs on its own event loop in a background thread. The
supervisor runs on the calling thread's loop and owns one Slot per agent:

  - built-in agents run the Agent loop over a DaemonEnvironment in a worker thread;
  - external `command:` agents run as subprocesses (cwd = workspace, COAGENT_* set, the
    shims first on PATH); exit 0 means finished (the supervisor then says `finish` for it
    unless it said `coagent done` itself); any other status means failed.

The daemon's directives reach the supervisor on an event stream (admin subscription):
`resume` for a finished agent relaunches it with its notices (built-in: `agent.resume`;
external: the command again with COAGENT_RESUME=1); `restart` (2pl/occ aborts) starts it
again from scratch once its current run has ended. A status poll backs the stream up: an
agent the supervisor holds finished but the daemon holds running is resumed.

On a workspace whose last run was recovered after a crash (`coagent recover`), the run
continues (run.continuation): the daemon rebuilds its controller from the journal, agents
it holds finished stay finished, built-in agents get their conversation back (the scripted
model replays its trajectory to its place) with a note on what the crash rolled back, and
external agents are launched again with COAGENT_CONTINUED=1.

Under `serial` the daemon admits a later agent only once the earlier ones finished, so
the supervisor launches them one after another. The run ends at quiescence (every agent
finished, no notice undelivered: the daemon's word), when no agent can go on (one failed),
or at the time limit. Then the daemon is stopped and the report is built; the counters
(notices, undos, redos, drops) are read from the run's journal.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

from rich.console import Console

from coagent_cli.agents import Agent, AgentConfig, Clock, SystemClock, Trajectory, make_model
from coagent_cli.daemon.client import AsyncClient, Client
from coagent_cli.daemon.run import DaemonInfo, DaemonSettings, Tokens, paths_for, serve_daemon
from coagent_cli.errors import CoagentError, ExecutionError
from coagent_cli.journal import Journal
from coagent_cli.run.environment import AgentAddress, DaemonEnvironment
from coagent_cli.run.continuation import RUN_DIR_META, AgentHistory, load_histories
from coagent_cli.run.plan import BuiltinAgent, ExternalAgent, Plan
from coagent_cli.shell.gated import shims_dir
from coagent_cli.run.report import AgentReport, RunReport

__all__ = ["Launcher", "RunOptions", "run_plan", "shims_bin"]

View = Literal["live", "plain", "none"]
POLL_EVERY = 0.1          # seconds between supervisor checks
SETTLE_TIMEOUT = 30.0     # seconds all agents may sit finished before quiescence is given up
MAX_LAUNCHES = 50         # per agent: resumes and restarts beyond this are a failure
DAEMON_START_TIMEOUT = 30.0


@dataclass
class RunOptions:
    workspace: Path
    cc: str | None = None                # None: the plan's controller
    time_limit: float | None = None      # seconds for the whole run; None: no limit
    view: View = "none"                  # live dashboard, plain lines, or nothing
    console: Console | None = None
    run_id: str | None = None            # None: a fresh one (time stamp and a random tail)
    socket: Path | None = None           # None: the workspace's default socket
    clock: Clock = field(default_factory=SystemClock)  # built-in agents' think time


def shims_bin() -> Path | None:
    """The shims' `bin/` (a checkout's, or the one a wheel installed), if there is one."""
    folder = shims_dir() / "bin"
    return folder if folder.is_dir() else None


def run_plan(plan: Plan, options: RunOptions) -> RunReport:
    return Launcher(plan, options).run()


# ---------------------------------------------------------------- the daemon thread


class DaemonThread:
    """serve_daemon on its own event loop in a background thread."""

    def __init__(self, settings: DaemonSettings) -> None:
        self.settings = settings
        self.info: DaemonInfo | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="coagent-daemon", daemon=True)

    def start(self) -> DaemonInfo:
        self._thread.start()
        if not self._ready.wait(DAEMON_START_TIMEOUT):
            raise ExecutionError("the daemon did not start in time", code="start_failed")
        if self.error is not None or self.info is None:
            raise self.error or ExecutionError("the daemon did not start", code="start_failed")
        return self.info

    def _main(self) -> None:
        def ready(info: DaemonInfo) -> None:
            self.info = info
            self._ready.set()
        try:
            asyncio.run(serve_daemon(self.settings, on_ready=ready))
        except BaseException as exc:  # reported by start() or stop()
            self.error = exc
        finally:
            self._ready.set()

    def stop(self, admin_token: str, timeout: float = 20.0) -> None:
        if self._thread.is_alive() and self.info is not None:
            try:
                with Client(self.info.socket, timeout=timeout) as admin:
                    admin.hello(token=admin_token, role="admin")
                    admin.shutdown()
            except CoagentError:
                pass  # it is going down already
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise ExecutionError("the daemon did not stop in time", code="stop_failed")


# ---------------------------------------------------------------- agents


class StopClock:
    """The agents' clock, with think time that ends early (raising) when the run stops."""

    def __init__(self, inner: Clock, stopped: threading.Event) -> None:
        self.inner, self.stopped = inner, stopped

    def now(self) -> float:
        return self.inner.now()

    def sleep(self, seconds: float) -> None:
        if isinstance(self.inner, SystemClock):
            if self.stopped.wait(max(0.0, seconds)):
                raise ExecutionError("the run was stopped", code="run_stopped")
        else:
            self.inner.sleep(seconds)


@dataclass
class Outcome:
    ok: bool
    reason: str | None = None
    again: bool = False      # finished, but the daemon held notices: relaunch as a resume


class Slot:
    """One agent of the run: how to launch it, and what it did."""

    def __init__(self, rank: int, entry: BuiltinAgent | ExternalAgent, address: AgentAddress) -> None:
        self.rank, self.entry, self.address = rank, entry, address
        self.state: Literal["waiting", "running", "finished", "failed", "timed_out"] = "waiting"
        self.task: asyncio.Task[Outcome] | None = None
        self.resume_pending = False
        self.restart_pending = False
        self.report = AgentReport(entry.name, rank, "external" if isinstance(entry, ExternalAgent) else "builtin")
        self.first_launch: float | None = None
        self.last_stop: float | None = None
        self.history: AgentHistory | None = None  # continuing a recovered run: what it had done

    @property
    def name(self) -> str:
        return self.entry.name


class BuiltinRunner:
    """The Agent loop over a DaemonEnvironment, in a worker thread."""

    def __init__(self, slot: Slot, launcher: "Launcher") -> None:
        assert isinstance(slot.entry, BuiltinAgent)
        self.slot, self.entry, self.launcher = slot, slot.entry, launcher
        self.config = launcher.agent_config(slot.entry)
        self.agent: Agent | None = None
        self.env: DaemonEnvironment | None = None
        self._spent: list[tuple[Agent, DaemonEnvironment]] = []  # earlier (restarted) runs

    @property
    def ready(self) -> bool:
        return self.agent is not None

    def fresh(self) -> None:
        if self.agent is not None and self.env is not None:
            self.env.close()
            self._spent.append((self.agent, self.env))
        clock = self.launcher.agent_clock
        self.env = DaemonEnvironment(self.slot.address, self.launcher.workspace)
        model = make_model(self.config.model, clock=clock, retry=self.config.retry)
        trajectory = Trajectory(self.launcher.run_dir, self.entry.name)
        history, self.slot.history = self.slot.history, None  # taken up once, not on a restart
        taken_up = history.taken_up() if history is not None else None
        task = self.entry.task if history is None or taken_up is not None else \
            f"{self.entry.task}\n\n{history.note()}"
        self.agent = Agent(self.entry.name, task, model=model, env=self.env, config=self.config,
                           clock=clock, trajectory=trajectory, taken_up=taken_up)

    def run(self, resume: bool) -> Outcome:
        """Blocking: one run (or resume) until the daemon accepts its finish."""
        assert self.agent is not None and self.env is not None
        try:
            result = self.agent.resume(self.env.take_notices()) if resume else self.agent.run()
            while result.ok and not self.env.finished:  # finish refused: notices came meanwhile
                result = self.agent.resume(self.env.take_notices())
        except CoagentError as exc:
            return Outcome(False, f"{exc.code}: {exc}")
        if not result.ok:
            return Outcome(False, f"stopped at its {result.status.replace('_', ' ')} limit")
        return Outcome(True)

    def fill(self, report: AgentReport) -> None:
        runs = self._spent + ([(self.agent, self.env)] if self.agent and self.env else [])
        report.steps = sum(a.steps for a, _ in runs)
        report.prompt_tokens = sum(a.usage.prompt for a, _ in runs)
        report.completion_tokens = sum(a.usage.completion for a, _ in runs)
        costs = [a.result("done").cost for a, _ in runs]
        report.cost = None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)
        report.waiting = sum(e.waiting for _, e in runs)
        report.executing = sum(e.executing for _, e in runs)
        report.thinking = max(0.0, sum(a.elapsed for a, _ in runs) - report.waiting - report.executing)

    def close(self) -> None:
        for _, env in self._spent + ([(self.agent, self.env)] if self.agent and self.env else []):
            env.close()
        if self.agent is not None:
            self.agent.model.close()


class ExternalRunner:
    """An external agent's command, as a subprocess of /bin/sh."""

    def __init__(self, slot: Slot, launcher: "Launcher") -> None:
        assert isinstance(slot.entry, ExternalAgent)
        self.slot, self.entry, self.launcher = slot, slot.entry, launcher
        self.process: asyncio.subprocess.Process | None = None
        self.ready = True
        self.continued = False  # launched once with COAGENT_CONTINUED=1

    def fresh(self) -> None:
        return None

    async def run(self, resume: bool) -> Outcome:
        log = (self.launcher.run_dir / f"{self.entry.name}.log").open("ab")
        try:
            self.process = await asyncio.create_subprocess_shell(
                self.entry.command, cwd=self.launcher.workspace, env=self._env(resume),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            status = await self.process.wait()
        finally:
            log.close()
        if status != 0:
            return Outcome(False, f"`{self.entry.command}` exited with status {status}{self._last_line()}")
        return await in_thread(self._finish, name=f"coagent-finish-{self.entry.name}")

    def _env(self, resume: bool) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("COAGENT_GATED", "COAGENT_RESUME")}
        env.update(self.slot.address.env())
        env["COAGENT_PYTHON"] = env.get("COAGENT_PYTHON", _python())
        shims = shims_bin()
        path = env.get("PATH", os.defpath)
        path = os.pathsep.join([str(Path(_python()).parent), path])  # `coagent` of this install
        env["PATH"] = os.pathsep.join([str(shims), path]) if shims is not None else path
        if resume:
            env["COAGENT_RESUME"] = "1"
        env.pop("COAGENT_CONTINUED", None)
        if self.slot.history is not None and not self.continued:
            env["COAGENT_CONTINUED"] = "1"  # a recovered run: it was here before the crash
            self.continued = True
        return env

    def _finish(self) -> Outcome:
        """It exited 0: it is finished, unless notices wait (then it runs again)."""
        with Client(self.slot.address.socket, timeout=30) as client:
            client.hello(agent=self.entry.name, token=self.slot.address.token)
            states = {a["name"]: a["state"] for a in client.status()["snapshot"]["agents"]}
            if states.get(self.entry.name) == "finished":
                return Outcome(True)  # it said `coagent done` itself
            reply = client.finish()
        return Outcome(True) if reply.get("finished") else Outcome(True, again=True)

    def _last_line(self) -> str:
        try:
            lines = (self.launcher.run_dir / f"{self.entry.name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        lines = [line for line in lines if line.strip()]
        return f" ({lines[-1].strip()[:200]})" if lines else ""

    def terminate(self) -> None:
        if self.process is not None and self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    def fill(self, report: AgentReport) -> None:
        report.steps = report.ops

    def close(self) -> None:
        self.terminate()


T = TypeVar("T")


def in_thread(fn: Callable[..., T], *args: Any, name: str) -> "asyncio.Future[T]":
    """Run blocking `fn` in a daemon thread of its own. Unlike asyncio.to_thread, the
    event loop can close while it still blocks (an agent held by the daemon at the time
    limit), and the daemon it waits on can then be stopped."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def main() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    threading.Thread(target=main, name=name, daemon=True).start()
    return future


def _python() -> str:
    import sys

    return sys.executable


# ---------------------------------------------------------------- the launcher


class Launcher:
    def __init__(self, plan: Plan, options: RunOptions) -> None:
        self.plan = plan
        self.options = options
        self.workspace = Path(options.workspace).resolve()
        self.cc = options.cc or plan.cc
        self.run_id = options.run_id or time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.run_dir = self.workspace / ".coagent" / "runs" / self.run_id
        self.stopped = threading.Event()
        self.agent_clock = StopClock(options.clock, self.stopped)
        self.slots: list[Slot] = []
        self.runners: dict[str, BuiltinRunner | ExternalRunner] = {}
        self._wake: asyncio.Event | None = None
        self._started = 0.0
        self._deadline: float | None = None

    def agent_config(self, entry: BuiltinAgent) -> AgentConfig:
        config = self.plan.agent_config(entry)
        if self.options.time_limit is not None:  # the agent loop stops itself in time too
            wall = min(config.wall_time or self.options.time_limit, self.options.time_limit)
            config = config.model_copy(update={"wall_time": wall})
        return config

    def run(self) -> RunReport:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        names = [a.name for a in self.plan.agents]
        journal = paths_for(self.workspace, self.options.socket).journal
        continuing = recovered(journal)
        daemon = DaemonThread(DaemonSettings(self.workspace, self.cc, names, self.options.socket))
        self._started = time.monotonic()
        info = daemon.start()
        tokens = Tokens.load(paths_for(self.workspace, self.options.socket).tokens)
        report = RunReport(self.run_id, str(self.workspace), self.cc, [], run_dir=str(self.run_dir))
        smith = self._start_toolsmith(report)
        try:
            histories = self._histories(journal, names, continuing)
            self._make_slots(info, tokens)
            if continuing:
                self._take_up(info, tokens, histories)
            report.quiescent, report.time_limit_hit = asyncio.run(self._supervise(info, tokens))
        finally:
            self.stopped.set()
            if smith is not None:
                smith.join(30)
            for runner in self.runners.values():
                runner.close()
            daemon.stop(tokens.admin)
        report.wall_time = time.monotonic() - self._started
        self._finish_report(report)
        report.write_json(self.run_dir / "report.json")
        return report

    def _start_toolsmith(self, report: RunReport) -> threading.Thread | None:
        """The plan's ToolSmith, in a thread, until the run stops: its outcomes go into
        the report (and, with a view, one line each)."""
        config = self.plan.toolsmith
        if config is None:
            return None
        from toolsmith.smith import ToolSmith

        smith = ToolSmith(self.workspace, min_count=config.min_count)
        console = self.options.console if self.options.view != "none" else None

        def heard(outcome: Outcome) -> None:
            report.tools_forged.append(outcome.to_json())
            if console is not None and outcome.status == "registered":
                console.print(f"coagent: the ToolSmith registered {outcome.name} "
                              f"({len(outcome.lines)} raw lines like `{outcome.lines[0]}`)", markup=False)

        def main() -> None:
            try:
                smith.watch(every=config.every, rounds=1_000_000, stop=self.stopped, on_outcome=heard)
            except CoagentError as exc:  # the run goes on without it
                report.tools_forged.append({"status": "failed", "detail": str(exc)})

        thread = threading.Thread(target=main, name="coagent-toolsmith", daemon=True)
        thread.start()
        return thread

    def _histories(self, journal: Path, names: list[str], continuing: bool) -> dict[str, AgentHistory]:
        """What each agent had done, when continuing; then this launcher's run directory
        goes into the journal, for the next continuation."""
        with Journal.open(journal) as j:
            histories = load_histories(j, names) if continuing else {}
            j.set_meta(RUN_DIR_META, str(self.run_dir))
        return histories

    def _take_up(self, info: DaemonInfo, tokens: Tokens, histories: dict[str, AgentHistory]) -> None:
        """A recovered run goes on: agents the daemon holds finished stay so (a notice
        relaunches them as usual); the others are taken up where they were."""
        with Client(info.socket, timeout=30) as admin:
            admin.hello(token=tokens.admin, role="admin")
            states = {a["name"]: a["state"] for a in admin.status()["snapshot"]["agents"]}
        for slot in self.slots:
            slot.history = histories.get(slot.name)
            if states.get(slot.name) == "finished":
                slot.state = "finished"
        if self.options.console is not None and self.options.view != "none":
            self.options.console.print("coagent: continuing the recovered run "
                                       f"({sum(len(h.ops) for h in histories.values())} ops stand)",
                                       markup=False)

    def _make_slots(self, info: DaemonInfo, tokens: Tokens) -> None:
        for rank, entry in enumerate(self.plan.agents):
            slot = Slot(rank, entry, AgentAddress(info.socket, entry.name, tokens.agents[entry.name]))
            self.slots.append(slot)
            kind = ExternalRunner if isinstance(entry, ExternalAgent) else BuiltinRunner
            self.runners[entry.name] = kind(slot, self)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- supervision

    async def _supervise(self, info: DaemonInfo, tokens: Tokens) -> tuple[bool, bool]:
        """Returns (quiescent, time limit hit)."""
        self._wake = asyncio.Event()
        if self.options.time_limit is not None:
            self._deadline = self._started + self.options.time_limit
        admin = await _admin(info.socket, tokens.admin)
        stream = await _admin(info.socket, tokens.admin)
        view_stop = asyncio.Event()
        directives = asyncio.create_task(self._directives(stream))
        view = None
        if self.options.view != "none":
            view = asyncio.create_task(self._view(info, tokens, view_stop))
        try:
            return await self._loop(admin)
        finally:
            for slot in self.slots:
                await self._stop_slot(slot)
            view_stop.set()  # the view draws its last frame (or summary table) and ends
            if view is not None:
                await asyncio.wait({view}, timeout=5)
            for task in (directives, view):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (directives, view) if t), return_exceptions=True)
            await asyncio.gather(admin.close(), stream.close(), return_exceptions=True)

    async def _loop(self, admin: AsyncClient) -> tuple[bool, bool]:
        settled_since: float | None = None
        while True:
            self._collect()
            snapshot = (await admin.status()).snapshot
            self._resume_behind_the_stream(snapshot)
            self._launch_due()
            if self._deadline is not None and time.monotonic() >= self._deadline:
                return snapshot.quiescent, True
            if not any(s.state == "running" for s in self.slots) and not self._pending():
                if snapshot.quiescent or any(s.state == "failed" for s in self.slots):
                    return snapshot.quiescent, False
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since > SETTLE_TIMEOUT:
                    return False, False
            else:
                settled_since = None
            await self._sleep(POLL_EVERY)

    def _pending(self) -> bool:
        return any(s.resume_pending or s.restart_pending for s in self.slots if s.state != "failed")

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    def _collect(self) -> None:
        """Take the outcome of every run that ended."""
        for slot in self.slots:
            if slot.task is None or not slot.task.done():
                continue
            task, slot.task = slot.task, None
            slot.last_stop = time.monotonic()
            outcome = task.result() if not task.cancelled() else Outcome(False, "cancelled")
            if slot.restart_pending:  # its run was discarded: whatever it ended with, start again
                slot.state = "finished"
            elif not outcome.ok:
                slot.state, slot.report.reason = "failed", outcome.reason
            else:
                slot.state, slot.report.reason = "finished", None
                slot.resume_pending = slot.resume_pending or outcome.again

    def _launch_due(self) -> None:
        for slot in self.slots:
            if slot.state in ("running", "failed", "timed_out"):
                continue
            if slot.state == "waiting" and self._may_start(slot):
                self._launch(slot, resume=False, fresh=True)
            elif slot.restart_pending:
                slot.report.restarts += 1
                self._launch(slot, resume=False, fresh=True)
            elif slot.resume_pending and slot.state == "finished":
                slot.report.resumes += 1
                self._launch(slot, resume=True, fresh=False)

    def _may_start(self, slot: Slot) -> bool:
        if self.cc != "serial":
            return True
        return all(s.state == "finished" for s in self.slots[: slot.rank])

    def _launch(self, slot: Slot, *, resume: bool, fresh: bool) -> None:
        slot.resume_pending = slot.restart_pending = False
        if slot.report.launches >= MAX_LAUNCHES:
            slot.state, slot.report.reason = "failed", f"relaunched {MAX_LAUNCHES} times; giving up"
            return
        slot.report.launches += 1
        slot.state = "running"
        slot.first_launch = slot.first_launch or time.monotonic()
        runner = self.runners[slot.name]
        if fresh or not runner.ready:  # a finished agent of a recovered run, resumed
            runner.fresh()
        if isinstance(runner, BuiltinRunner):
            slot.task = asyncio.ensure_future(in_thread(runner.run, resume, name=f"coagent-agent-{slot.name}"))
        else:
            slot.task = asyncio.create_task(runner.run(resume))
        slot.task.add_done_callback(lambda _t: self._wake.set() if self._wake else None)

    def _resume_behind_the_stream(self, snapshot: Any) -> None:
        """The event stream may drop events under load; the daemon's status cannot."""
        states = {a.name: a for a in snapshot.agents}
        for slot in self.slots:
            info = states.get(slot.name)
            if slot.state == "finished" and info is not None and info.state != "finished" and info.pending_notices:
                slot.resume_pending = True

    async def _directives(self, stream: AsyncClient) -> None:
        async for event in stream.subscribe():
            slot = next((s for s in self.slots if s.name == event.agent), None)
            if slot is None:
                continue
            if event.kind == "agent_resumed" and event.detail.startswith("restart"):
                slot.restart_pending = True
            elif event.kind == "agent_resumed" and event.detail.startswith("resume"):
                slot.resume_pending = True
            else:
                continue
            if self._wake is not None:
                self._wake.set()

    async def _view(self, info: DaemonInfo, tokens: Tokens, stop: asyncio.Event) -> None:
        from coagent_cli.monitor.cli import attach

        console = self.options.console or Console(highlight=False)
        try:
            await attach(Path(info.socket), tokens.monitor, console, live=self.options.view == "live", stop=stop)
        except CoagentError as exc:  # the view is a convenience: the run goes on without it
            console.print(f"coagent: live view ended: {exc}", markup=False)

    async def _stop_slot(self, slot: Slot) -> None:
        if slot.task is None:
            return
        self.stopped.set()
        runner = self.runners[slot.name]
        if isinstance(runner, ExternalRunner):
            runner.terminate()
        done, _ = await asyncio.wait({slot.task}, timeout=5)
        if not done:
            slot.task.cancel()
        slot.state, slot.report.reason = "timed_out", "still running when the run stopped"
        slot.last_stop = time.monotonic()
        slot.task = None

    # ---------------------------------------------------------------- the report

    def _finish_report(self, report: RunReport) -> None:
        counts = journal_counts(paths_for(self.workspace, self.options.socket).journal)
        for slot in self.slots:
            r = slot.report
            r.status = "not_started" if slot.state == "waiting" else slot.state  # type: ignore[assignment]
            if slot.state == "running":
                r.status = "timed_out"
            mine = counts.get(slot.name, {})
            r.ops, r.notices = mine.get("ops", 0), mine.get("notices", 0)
            r.undone, r.redone, r.dropped = mine.get("undone", 0), mine.get("redone", 0), mine.get("dropped", 0)
            if slot.first_launch is not None:
                r.wall = (slot.last_stop or time.monotonic()) - slot.first_launch
            self.runners[slot.name].fill(r)
            report.agents.append(r)
        report.daemon_failures = counts.get("", {}).get("failures", [])  # type: ignore[assignment]


def recovered(journal: Path) -> bool:
    """Whether the workspace's last run was recovered after a crash (and not ended)."""
    if not journal.exists():
        return False
    with Journal.open(journal) as j:
        return bool(j.get_meta("run_state") == "recovered")


async def _admin(socket: str, token: str) -> AsyncClient:
    client = await AsyncClient.connect(socket, timeout=30)
    try:
        await client.hello(token=token, role="admin")
    except BaseException:
        await client.close()
        raise
    return client


def journal_counts(path: Path) -> dict[str, dict[str, Any]]:
    """Per agent: ops, notices, undone, redone, dropped; under "": the daemon's failures."""
    counts: dict[str, dict[str, Any]] = {"": {"failures": []}}
    owner: dict[int, str] = {}

    def bump(agent: str | None, what: str) -> None:
        if agent:
            mine = counts.setdefault(agent, {})
            mine[what] = mine.get(what, 0) + 1

    with Journal.open(path) as journal:
        for e in journal.timeline():
            if e.kind == "op_requested" and e.op_id is not None and e.agent:
                owner[e.op_id] = e.agent
                bump(e.agent, "ops")
            elif e.kind == "op_undone" and e.op_id is not None:
                bump(owner.get(e.op_id), "undone")
            elif e.kind == "op_redone" and e.op_id is not None and e.payload.get("ok", True):
                bump(owner.get(e.op_id), "redone")
            elif e.kind == "drop" and e.op_id is not None:
                bump(owner.get(e.op_id), "dropped")
            elif e.kind == "notify":
                bump(e.agent, "notices")
            elif e.kind == "effect_failed":
                counts[""]["failures"].append(str(e.payload.get("message", "")))
    return counts
