"""One daemon process per workspace run: its files, its start and stop, and recovery.

Layout under `<workspace>/.coagent/`:

    journal.db        the run's journal (SQLite WAL); runs that ended are moved to runs/
    blobs/            before/after images (content-addressed)
    run/ (0700)       daemon.sock, daemon.pid, daemon.json (pid, socket, cc, agents),
                      tokens.json (0600: per-agent, admin and monitor tokens), daemon.log

A socket path longer than AF_UNIX allows goes to `$TMPDIR/coagent-<uid>/<hash>.sock`
(also 0700); daemon.json says where.

The run's life, as the journal's `run_state` meta records it:
    running    a daemon serves it (or died: then `recover` first)
    recovered  `recover` reverted every effect left unfinished; `daemon start` CONTINUES
               the run: same agents and tokens, same launch manifest, op ids go on. The
               controller starts fresh: ops completed before the crash count as settled
               history (the workspace holds their results; the journal, their images).
    ended      a clean shutdown; the next `daemon start` archives the journal, new run.

`undo_all` restores the launch manifest (recorded when a run starts) byte for byte:
every file's bytes and mode, symlinks, deleted files back, created files and
directories gone. It works from the journal alone, daemon or no daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import json
import logging
import os
import secrets
import signal
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from coagent_cli.errors import CoagentError, UsageError
from coagent_cli.journal import BlobStore, Effect, FileImage, Journal
from coagent_cli.workspace.paths import STATE_DIR_NAME

if TYPE_CHECKING:
    from coagent_cli.daemon.resume import Resumed
    from coagent_cli.workspace import Snapshotter

log = logging.getLogger(__name__)

__all__ = [
    "RunPaths", "DaemonSettings", "Tokens", "DaemonInfo", "paths_for", "serve_daemon",
    "start_detached", "stop_daemon", "daemon_info", "recover", "undo_all", "RecoveryReport",
    "main",
]

CONTROLLERS = ("mtpo", "2pl", "occ", "serial", "none")
ENV_EXECUTOR = "COAGENT_EXECUTOR"
"""`module:callable` building the executor (default: the WorkspaceExecutor); for tests
and custom environments. Called as factory(workspace, state_dir, journal=, blobs=)."""

_SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; keep a margin
_ENDED, _RUNNING, _RECOVERED = "ended", "running", "recovered"


# ---------------------------------------------------------------- files of a run


@dataclass(frozen=True)
class RunPaths:
    workspace: Path
    state: Path
    run: Path
    journal: Path
    blobs: Path
    pidfile: Path
    info: Path
    tokens: Path
    log: Path
    socket: Path


def paths_for(workspace: Path | str, socket_path: Path | None = None) -> RunPaths:
    ws = Path(workspace).resolve()
    if not ws.is_dir():
        raise UsageError(f"workspace {ws} is not a directory", code="bad_workspace")
    state = ws / STATE_DIR_NAME
    run = state / "run"
    sock = socket_path or _default_socket(run, ws)
    return RunPaths(ws, state, run, state / "journal.db", state / "blobs", run / "daemon.pid",
                    run / "daemon.json", run / "tokens.json", run / "daemon.log", sock)


def _default_socket(run: Path, ws: Path) -> Path:
    sock = run / "daemon.sock"
    if len(os.fsencode(sock)) <= _SUN_PATH_MAX:
        return sock
    tag = hashlib.sha256(os.fsencode(ws)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"coagent-{os.geteuid()}" / f"{tag}.sock"


@dataclass
class Tokens:
    agents: dict[str, str]
    admin: str
    monitor: str

    @staticmethod
    def issue(agents: list[str]) -> "Tokens":
        return Tokens({a: secrets.token_hex(16) for a in agents}, secrets.token_hex(16),
                      secrets.token_hex(16))

    def save(self, path: Path) -> None:
        data = json.dumps({"agents": self.agents, "admin": self.admin, "monitor": self.monitor})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(data)

    @staticmethod
    def load(path: Path) -> "Tokens":
        try:
            data = json.loads(path.read_text())
            return Tokens(dict(data["agents"]), data["admin"], data["monitor"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"cannot read the run's tokens at {path}: {exc}", code="no_daemon") from None


@dataclass
class DaemonInfo:
    pid: int
    socket: str
    cc: str
    agents: list[str]
    started: float

    @staticmethod
    def load(path: Path) -> "DaemonInfo | None":
        try:
            return DaemonInfo(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


@dataclass
class DaemonSettings:
    workspace: Path
    cc: str = "mtpo"
    agents: list[str] = field(default_factory=list)
    socket: Path | None = None
    orphan_grace: float | None = 0.0

    def __post_init__(self) -> None:
        if self.cc not in CONTROLLERS:
            raise UsageError(f"unknown protocol {self.cc!r}; choose one of {', '.join(CONTROLLERS)}")
        if len(set(self.agents)) != len(self.agents):
            raise UsageError("agent names must be distinct")


def pid_alive(pid: int) -> bool:
    """True if `pid` runs and is a coagent daemon (a reused pid is not ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the signal
    return b"coagent_cli.daemon.run" in cmdline


def daemon_info(paths: RunPaths) -> DaemonInfo | None:
    """The running daemon of this workspace, or None (no daemon, or a stale pidfile)."""
    info = DaemonInfo.load(paths.info)
    if info is None or not pid_alive(info.pid):
        return None
    return info


# ---------------------------------------------------------------- serving


async def serve_daemon(settings: DaemonSettings, *, on_ready: Callable[[DaemonInfo], None] | None = None,
                       executor_factory: Callable[..., Any] | None = None) -> None:
    """Run the daemon in this process until a shutdown request or SIGTERM/SIGINT."""
    from coagent_cli.core import make_controller
    from coagent_cli.daemon.service import DaemonService, ServiceConfig
    from coagent_cli.daemon.transport import EventHub, Server, prepare_run_dir

    paths = paths_for(settings.workspace, settings.socket)
    prepare_run_dir(paths.run)
    if paths.socket.parent != paths.run:
        prepare_run_dir(paths.socket.parent)
    if daemon_info(paths) is not None:
        raise UsageError(f"a daemon already serves {paths.workspace}", code="already_running")
    journal, tokens = await asyncio.to_thread(_open_run, paths, settings)
    ready = False
    try:
        blobs = BlobStore(paths.blobs)
        factory = executor_factory or _executor_factory()
        executor = await asyncio.to_thread(factory, paths.workspace, paths.state, journal=journal, blobs=blobs)
        if hasattr(executor, "rebase_stale_writes"):  # the real executor; test stand-ins lack it
            executor.rebase_stale_writes = settings.cc == "mtpo"
        hub = EventHub()
        config = ServiceConfig(paths.workspace, dict(tokens.agents), tokens.admin, tokens.monitor,
                               settings.cc, settings.orphan_grace)
        resumed = await asyncio.to_thread(_resumed, journal, settings.cc, executor)
        controller = resumed.core if resumed is not None else make_controller(settings.cc)
        service = DaemonService(config, controller, executor, journal, hub)
        await service.start(resumed)
        async with Server(paths.socket, service, hub=hub) as server:
            info = DaemonInfo(os.getpid(), str(paths.socket), settings.cc, list(tokens.agents), time.time())
            _write_info(paths, info)
            _on_signals(server.request_shutdown)
            ready = True
            if on_ready is not None:
                on_ready(info)
            await server.wait_closed()
        await service.drain()
        await asyncio.to_thread(_close_run, journal, service.quiescent)
    except BaseException:
        if not ready:  # nobody was served: nothing to recover, the run simply did not start
            await asyncio.to_thread(_not_started, journal)
        raise
    finally:
        journal.close()
        for leftover in (paths.info, paths.pidfile):
            leftover.unlink(missing_ok=True)


def _resumed(journal: Journal, cc: str, executor: Any) -> "Resumed | None":
    """On a continued run: the controller rebuilt from the journal (daemon.resume), with
    the executor's ops taken up; None on a new run, or one that cannot be replayed."""
    from coagent_cli.daemon.resume import rebuild

    if journal.get_meta("continued") is None:
        return None
    try:
        resumed = rebuild(journal, cc, executor if hasattr(executor, "adopt") else None)
    except CoagentError as exc:  # the journal does not rebuild: go on with a fresh controller
        log.warning("the run's controller could not be rebuilt (%s); its earlier ops are "
                    "settled history from now on", exc)
        journal.record("rebuild_failed", {"error": str(exc)})
        return None
    for problem in resumed.problems if resumed is not None else ():
        log.warning("not taken up: %s", problem)
        journal.record("not_taken_up", {"problem": problem})
    return resumed


def _open_run(paths: RunPaths, settings: DaemonSettings) -> tuple[Journal, Tokens]:
    """Open (or continue, or archive and start) the run's journal; record the launch."""
    journal = Journal.open(paths.journal)
    state = journal.get_meta("run_state")
    if state == _ENDED:
        journal.close()
        _archive(paths)
        journal, state = Journal.open(paths.journal), None
    if state == _RUNNING:
        journal.close()
        raise UsageError("the last run of this workspace did not end cleanly; "
                         "run `coagent recover` first", code="needs_recover")
    if state == _RECOVERED:
        tokens = Tokens.load(paths.tokens)
        if settings.agents and list(settings.agents) != list(tokens.agents):
            journal.close()
            raise UsageError("a recovered run continues with its own agents "
                             f"({', '.join(tokens.agents)}); undo --all to start over", code="agents_differ")
        settings.cc = journal.get_meta("cc") or settings.cc
        journal.set_meta("continued", True)
    else:
        tokens = Tokens.issue(settings.agents)
        journal.record_launch(capture_manifest(paths.workspace, BlobStore(paths.blobs)))
        journal.set_meta("launch_dirs", sorted(_dirs(paths.workspace)))
        journal.set_meta("cc", settings.cc)
        journal.set_meta("agents", list(settings.agents))
    tokens.save(paths.tokens)
    journal.set_meta("run_state", _RUNNING)
    journal.record("daemon_started", {"pid": os.getpid(), "cc": settings.cc, "agents": list(tokens.agents)})
    return journal, tokens


def _not_started(journal: Journal) -> None:
    """A daemon that failed before it served anyone: a new run simply did not start; a
    continued one stays recovered, to be continued again."""
    if journal.get_meta("continued") is None:
        _close_run(journal, False)
        return
    journal.record("daemon_stopped", {"quiescent": False, "started": False})
    journal.set_meta("run_state", _RECOVERED)


def _close_run(journal: Journal, quiescent: bool) -> None:
    journal.record("daemon_stopped", {"quiescent": quiescent})
    journal.set_meta("run_state", _ENDED)


def _archive(paths: RunPaths) -> None:
    runs = paths.state / "runs"
    runs.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{paths.journal}{suffix}")
        if src.exists():
            os.replace(src, runs / f"journal-{stamp}.db{suffix}")


def _write_info(paths: RunPaths, info: DaemonInfo) -> None:
    paths.pidfile.write_text(f"{info.pid}\n")
    tmp = paths.info.with_suffix(".tmp")
    tmp.write_text(json.dumps(info.__dict__))
    os.replace(tmp, paths.info)


def _on_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests): shutdown then comes by request only


def _executor_factory() -> Callable[..., Any]:
    spec = os.environ.get(ENV_EXECUTOR)
    if spec:
        module, _, name = spec.partition(":")
        try:
            return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
        except (ImportError, AttributeError) as exc:
            raise UsageError(f"{ENV_EXECUTOR}={spec}: {exc}", code="bad_executor") from None
    return workspace_executor


def workspace_executor(workspace: Path, state_dir: Path, *, journal: Journal, blobs: BlobStore) -> Any:
    """The real executor, with the workspace's tool library (built-in, user, workspace)."""
    try:
        from coagent_cli.executor.workspace import WorkspaceExecutor
        from coagent_cli.tools import ToolLibrary
    except ImportError as exc:
        raise UsageError(f"the workspace executor is not available: {exc}", code="bad_executor") from None
    library = ToolLibrary.for_workspace(workspace)
    return WorkspaceExecutor(workspace, state_dir, journal=journal, blobs=blobs, library=library)


# ---------------------------------------------------------------- detached start and stop


def start_detached(settings: DaemonSettings, *, timeout: float = 20.0) -> DaemonInfo:
    """Start the daemon in the background; return once it listens (or raise)."""
    import subprocess

    args = [sys.executable, "-m", "coagent_cli.daemon.run", "--detach",
            "--workspace", str(settings.workspace), "--cc", settings.cc]
    for agent in settings.agents:
        args += ["--agent", agent]
    if settings.socket is not None:
        args += ["--socket", str(settings.socket)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CoagentError(f"the daemon did not start within {timeout:.0f}s", code="start_failed") from None
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["the daemon did not start"])[-1]
        raise UsageError(message.removeprefix("coagent daemon: "), code="start_failed")
    info = DaemonInfo.load(paths_for(settings.workspace, settings.socket).info)
    if info is None:
        raise CoagentError("the daemon started but wrote no daemon.json", code="start_failed")
    return info


def stop_daemon(workspace: Path, *, timeout: float = 15.0) -> bool:
    """Ask the workspace's daemon to shut down and wait for it; False if none ran."""
    from coagent_cli.daemon.client import Client

    paths = paths_for(workspace)
    info = daemon_info(paths)
    if info is None:
        return False
    tokens = Tokens.load(paths.tokens)
    try:
        with Client(info.socket, timeout=timeout) as client:
            client.hello(token=tokens.admin, role="admin")
            client.shutdown()
    except CoagentError:
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(info.pid):
        if time.monotonic() > deadline:
            raise CoagentError(f"daemon {info.pid} did not stop within {timeout:.0f}s", code="stop_failed")
        time.sleep(0.02)
    return True


def _detach(settings: DaemonSettings) -> int:
    """Fork: the child becomes the daemon (own session, output to daemon.log); the
    parent waits on a pipe for "ok" or one error line, then exits with the verdict."""
    paths = paths_for(settings.workspace, settings.socket)
    from coagent_cli.daemon.transport import prepare_run_dir

    prepare_run_dir(paths.run)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            verdict = pipe.read().strip()
        if verdict == "ok":
            return 0
        print(f"coagent daemon: {verdict or 'the daemon exited before it was ready'}", file=sys.stderr)
        return 2
    os.close(read_end)
    os.setsid()
    _redirect_output(paths.log)
    report = os.fdopen(write_end, "w")

    def ready(info: DaemonInfo) -> None:
        report.write("ok\n")
        report.close()

    code = _serve_main(settings, ready, report)
    os._exit(code)


def _redirect_output(log: Path) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)


def _serve_main(settings: DaemonSettings, ready: Callable[[DaemonInfo], None] | None, report: Any = None) -> int:
    try:
        asyncio.run(serve_daemon(settings, on_ready=ready))
        return 0
    except CoagentError as exc:
        message = exc.message.splitlines()[0] if exc.message else exc.code
        print(f"coagent daemon: {message}", file=sys.stderr, flush=True)
        if report is not None and not report.closed:
            report.write(message + "\n")
            report.close()
        return 2


# ---------------------------------------------------------------- recovery


@dataclass
class RecoveryReport:
    reverted: list[str] = field(default_factory=list)   # "op 3 undo: a.txt, b.txt"
    unrevertable: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)   # interrupted sequences carried on
    problems: list[str] = field(default_factory=list)   # what could not be taken up
    state_before: str | None = None


def recover(workspace: Path) -> RecoveryReport:
    """After a crash: revert every effect begun and never ended, newest first; then
    rebuild the dead daemon's controller from the journal and finish the sequences it
    had under way (an op undone and waiting for its redo is redone: daemon.resume);
    mark the run recovered. An effect is reverted from the before-images journaled with
    it and, for a raw command cut off mid-run (whose before-images were unknown when it
    began), from its pre-run snapshot: every path the op may write that differs between
    that snapshot and the live tree is put back as the snapshot had it."""
    paths = paths_for(workspace)
    if daemon_info(paths) is not None:
        raise UsageError("the daemon is running; stop it first (coagent daemon stop)", code="daemon_running")
    if not paths.journal.exists():
        raise UsageError(f"no run journal in {paths.state}", code="no_journal")
    report = RecoveryReport()
    with Journal.open(paths.journal) as journal:
        report.state_before = journal.get_meta("run_state")
        blobs = BlobStore(paths.blobs)
        launch = journal.launch_manifest() or {}
        effects = journal.open_effects()
        report.reverted += _kill_leftovers(journal, {e.op_id for e in effects})
        report.reverted += [f"stray temporary file {p}" for p in _remove_strays(paths.workspace, launch)]
        pre_run = _pre_run_snapshots(journal, {e.id for e in effects})
        snapshots = _RecoverySnapshots(paths)
        for effect in reversed(effects):
            _revert_effect(paths.workspace, blobs, snapshots, effect, pre_run.get(effect.id), report)
            journal.end_effect(effect.id, "reverted by recover")
        _take_up(paths, journal, report)
        journal.record("recovered", {"reverted": report.reverted, "unrevertable": report.unrevertable,
                                     "finished": report.finished, "problems": report.problems})
        if report.state_before == _RUNNING:
            journal.set_meta("run_state", _RECOVERED)
    for leftover in (paths.info, paths.pidfile):
        leftover.unlink(missing_ok=True)
    return report


def _take_up(paths: RunPaths, journal: Journal, report: RecoveryReport) -> None:
    """Finish what the dead daemon had under way (daemon.resume); say why not if not."""
    from coagent_cli.daemon.resume import finish_interrupted, rebuild

    cc = journal.get_meta("cc") or "mtpo"
    try:
        executor = workspace_executor(paths.workspace, paths.state, journal=journal, blobs=BlobStore(paths.blobs))
        executor.rebase_stale_writes = cc == "mtpo"
        resumed = rebuild(journal, cc, executor)
        if resumed is None:
            report.problems.append("the journal predates replayable records: sequences under way "
                                   "were not finished (the tree holds what had completed)")
            return
        report.problems += [f"not taken up: {p}" for p in resumed.problems]
        report.finished += finish_interrupted(journal, resumed, executor)
    except CoagentError as exc:
        report.problems.append(f"could not finish what was under way: {exc.message}")


def _kill_leftovers(journal: Journal, ops: set[int | None]) -> list[str]:
    """Commands the dead daemon was running for unfinished effects (a redo re-running a
    raw command lives in its own session): killed before anything is reverted, so that
    they cannot write afterwards."""
    from coagent_cli.executor.process import kill_leftover

    killed = []
    for event in journal.timeline():
        if event.kind == "process" and event.op_id in ops:
            pgid = int(event.payload["pgid"])
            if kill_leftover(pgid, event.payload.get("started")):
                killed.append(f"killed the still-running command of op {event.op_id} (process group {pgid})")
    return killed


def _revert_effect(workspace: Path, blobs: BlobStore, snapshots: "_RecoverySnapshots",
                   effect: Effect, pre_run: dict[str, Any] | None, report: RecoveryReport) -> None:
    """Put back what one unfinished effect may have changed; say so in `report`. The
    snapshot goes first (it also removes the directories the op created); the exact
    images then (a snapshot keeps only the exec bit of a mode)."""
    line = f"op {effect.op_id} {effect.action}"
    problem = None if effect.images or pre_run is not None else "no recorded images"
    ran: list[str] = []
    if pre_run is not None:
        try:
            ran = snapshots.revert(pre_run)
        except CoagentError as exc:  # the shadow repository is gone or broken
            problem = f"pre-run snapshot unusable ({exc.message})"
    _revert(workspace, blobs, effect.images)
    names = ", ".join(sorted(effect.images.keys() | set(ran))) or "nothing had changed"
    if problem is None:
        report.reverted.append(f"{line}: {names}")
    else:
        report.unrevertable.append(f"{line}: {problem}")


def _pre_run_snapshots(journal: Journal, effect_ids: set[int]) -> dict[int, dict[str, Any]]:
    """effect id -> the `snapshot` event journaled with it (executor.journaling: JournalingMixin._begin)."""
    return {e.payload["effect"]: e.payload for e in journal.timeline()
            if e.kind == "snapshot" and e.payload.get("effect") in effect_ids}


class _RecoverySnapshots:
    """The run's shadow-git Snapshotter, opened on first use."""

    def __init__(self, paths: RunPaths) -> None:
        self._paths = paths
        self._snapshotter: Snapshotter | None = None

    def revert(self, pre_run: dict[str, Any]) -> list[str]:
        """Restore the paths the op may write that changed since its pre-run snapshot;
        returns them."""
        from coagent_cli.core.keys import Key
        from coagent_cli.workspace import Snapshot

        snaps = self._open()
        before = Snapshot(pre_run["tree"], pre_run["gitdir"], tuple(pre_run.get("opaque", ())))
        writes = [Key.parse(k) for k in pre_run["writes"]]
        changed = [c.path for c in snaps.changes(before, snaps.snapshot())
                   if any(w.covers(c.key) for w in writes)]
        if changed:
            snaps.restore(changed, before)
        return changed

    def _open(self) -> "Snapshotter":
        if self._snapshotter is None:
            from coagent_cli.workspace import Snapshotter

            # The daemon died, perhaps inside `git add`: its index lock would refuse us.
            (self._paths.state / "shadow.git" / "index.lock").unlink(missing_ok=True)
            self._snapshotter = Snapshotter(self._paths.workspace, self._paths.state,
                                            BlobStore(self._paths.blobs))
        return self._snapshotter


def _remove_strays(workspace: Path, launch: dict[str, FileImage]) -> list[str]:
    """Temporary files a restore cut short leaves beside its target (`.NAME.coagent-*`)."""
    strays = [rel for rel in _walk(workspace, files=True)
              if rel not in launch and ".coagent-" in rel.rsplit("/", 1)[-1]
              and rel.rsplit("/", 1)[-1].startswith(".")]
    for rel in strays:
        (workspace / rel).unlink(missing_ok=True)
    return strays


def _revert(workspace: Path, blobs: BlobStore, images: dict[str, FileImage]) -> None:
    from coagent_cli.workspace.paths import checked

    gone = sorted((p for p, i in images.items() if i.kind == "absent"), key=lambda p: -p.count("/"))
    for rel in gone + sorted((p for p, i in images.items() if i.kind != "absent"), key=lambda p: p.count("/")):
        blobs.restore(checked(workspace, rel), images[rel])


def undo_all(workspace: Path) -> list[str]:
    """Restore the workspace to its launch manifest byte for byte; returns the paths
    changed. The daemon must not be running."""
    from coagent_cli.workspace.paths import checked

    paths = paths_for(workspace)
    if daemon_info(paths) is not None:
        raise UsageError("the daemon is running; stop it first (coagent daemon stop)", code="daemon_running")
    if not paths.journal.exists():
        raise UsageError(f"no run journal in {paths.state}", code="no_journal")
    with Journal.open(paths.journal) as journal:
        launch = journal.launch_manifest()
        dirs = set(journal.get_meta("launch_dirs") or [])
        if launch is None:
            raise UsageError("the journal has no launch manifest", code="no_launch")
        blobs = BlobStore(paths.blobs)
        current = capture_manifest(paths.workspace, blobs)
        changed = sorted(p for p in current.keys() | launch.keys()
                         if current.get(p, FileImage.absent()) != launch.get(p, FileImage.absent()))
        images = {p: launch.get(p, FileImage.absent()) for p in changed}
        _revert(paths.workspace, blobs, images)
        for folder in sorted(_dirs(paths.workspace) - dirs, key=lambda d: -d.count("/")):
            target = checked(paths.workspace, folder)
            if not any(target.iterdir()):
                target.rmdir()
        for folder in sorted(dirs - _dirs(paths.workspace), key=lambda d: d.count("/")):
            checked(paths.workspace, folder).mkdir(exist_ok=True)
        for effect in journal.open_effects():
            journal.end_effect(effect.id, "superseded by undo --all")
        journal.record("undo_all", {"paths": changed})
        journal.set_meta("run_state", _ENDED)  # the run is over: back at its launch
    return changed


def capture_manifest(workspace: Path, blobs: BlobStore) -> dict[str, FileImage]:
    """Every file and symlink below the workspace (`.coagent/` excepted), exactly."""
    found: dict[str, FileImage] = {}
    for rel in _walk(workspace, files=True):
        image = blobs.capture(workspace / rel)
        if image.kind != "absent":
            found[rel] = image
    return found


def _dirs(workspace: Path) -> set[str]:
    return set(_walk(workspace, files=False))


def _walk(workspace: Path, *, files: bool) -> list[str]:
    out: list[str] = []
    stack = [""]
    while stack:
        prefix = stack.pop()
        with os.scandir(workspace / prefix if prefix else workspace) as it:
            for entry in it:
                rel = f"{prefix}/{entry.name}" if prefix else entry.name
                if rel == STATE_DIR_NAME:
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    stack.append(rel)
                    if not files:
                        out.append(rel)
                elif files and (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                    out.append(rel)
    return out


# ---------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """`python -m coagent_cli.daemon.run --workspace DIR [--cc X] [--agent A ...] [--detach]`"""
    parser = argparse.ArgumentParser(prog="coagent-daemon")
    parser.add_argument("--workspace", default=".")
    parser.add_argument("--cc", default="mtpo")
    parser.add_argument("--agent", action="append", default=[])
    parser.add_argument("--socket", default=None)
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = DaemonSettings(Path(args.workspace), args.cc, list(args.agent),
                                  Path(args.socket) if args.socket else None)
        if args.detach:
            return _detach(settings)
    except CoagentError as exc:
        print(f"coagent daemon: {exc.message}", file=sys.stderr)
        return 2
    return _serve_main(settings, None)


if __name__ == "__main__":
    sys.exit(main())
