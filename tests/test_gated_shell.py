"""The gated rc and GatedShell against a recording stand-in daemon on a real Unix socket:
one begin_op per command LINE with the whole line, one end_op with its exit status,
refusals skip the whole line, notices print in-band, timeouts kill and leave the shell
usable, output is capped with head and tail kept."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pexpect
import pytest

from coagent_cli.daemon import wire
from coagent_cli.daemon.transport import Connection, FakeHandler, Server
from coagent_cli.errors import WireError
from coagent_cli.shell.gated import AsyncGatedShell, GatedShell, ShellResult

pytestmark = pytest.mark.timeout(30)

TOKENS = {"alice": "tok-alice", "bob": "tok-bob"}
REFUSE = "REFUSE-ME"  # a command line containing this is refused by the recording daemon


@dataclass(frozen=True)
class Call:
    agent: str
    type: str            # begin_op | end_op
    command: str | None = None
    exit_status: int | None = None


class RecordingHandler(FakeHandler):
    """FakeHandler that records begin_op/end_op, refuses lines containing REFUSE, and
    hands queued notices out with the next grant."""

    def __init__(self) -> None:
        super().__init__(TOKENS)
        self.calls: list[Call] = []

    async def handle(self, conn: Connection, request: wire.Request) -> wire.Response:
        agent = conn.agent or ""
        if isinstance(request, wire.BeginOp):
            self.calls.append(Call(agent, "begin_op", command=request.command))
            if REFUSE in (request.command or ""):
                raise WireError("the test daemon refuses this line", code="refused")
            grant = await super().handle(conn, request)
            notices, self.inboxes[agent] = self.inboxes[agent], []
            return grant.model_copy(update={"notices": notices})
        if isinstance(request, wire.EndOp):
            self.calls.append(Call(agent, "end_op", exit_status=request.exit_status))
        return await super().handle(conn, request)


class DaemonThread:
    """The recording daemon served on a real Unix socket from a background loop."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "run" / "d.sock"
        self.handler = RecordingHandler()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await Server(self.path, self.handler, grace=1.0).start()
        self._ready.set()
        await self._server.wait_closed()

    def start(self) -> "DaemonThread":
        self._thread.start()
        assert self._ready.wait(10), "daemon did not start"
        return self

    def stop(self) -> None:
        assert self._loop is not None and self._server is not None
        asyncio.run_coroutine_threadsafe(self._server.close(), self._loop).result(10)
        self._thread.join(10)

    def env(self, agent: str = "alice", **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COAGENT_")}
        env.update(COAGENT_SOCKET=str(self.path), COAGENT_AGENT=agent, COAGENT_TOKEN=TOKENS[agent],
                   COAGENT_PYTHON=sys.executable, **extra)
        return env

    def calls(self, agent: str = "alice") -> list[Call]:
        return [c for c in self.handler.calls if c.agent == agent]

    def notify(self, agent: str, key: str, by: str, detail: str) -> None:
        assert self._loop is not None

        async def queue() -> None:
            self.handler.notify(agent, key, by, detail)

        asyncio.run_coroutine_threadsafe(queue(), self._loop).result(10)


def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture
def tmp_short() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="cgs"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(tmp_short: Path) -> Iterator[DaemonThread]:
    server = DaemonThread(tmp_short).start()
    yield server
    server.stop()


@pytest.fixture
def workspace(tmp_short: Path) -> Path:
    path = tmp_short / "ws"
    path.mkdir()
    return path


@pytest.fixture
def shell(daemon: DaemonThread, workspace: Path) -> Iterator[GatedShell]:
    with GatedShell(workspace, daemon.env(), timeout=10) as sh:
        yield sh


def ops(calls: list[Call]) -> list[tuple[str, str | int | None]]:
    return [(c.type, c.command if c.type == "begin_op" else c.exit_status) for c in calls]


# ---------------------------------------------------------------- one gate per line


LINES = [
    ("echo a | tr a b && false", 1, "b\n"),
    ("(touch sub); echo after", 0, "after\n"),
    ("for i in 1 2; do echo $i; done", 0, "1\n2\n"),
    ("x=3", 0, ""),
    ("f() { echo in-f; }; f", 0, "in-f\n"),
    ("echo $(echo sub) `echo tick`", 0, "sub tick\n"),
    ("cat <<EOF\nline one\nline two\nEOF", 0, "line one\nline two\n"),
    ("{ echo grouped; (exit 4); }", 4, "grouped\n"),
]


def test_each_line_is_one_begin_and_one_end(daemon: DaemonThread, shell: GatedShell) -> None:
    for line, status, output in LINES:
        result = shell.run(line)
        assert (result.exit_status, result.output) == (status, output), line
    expected = [step for line, status, _ in LINES for step in (("begin_op", line), ("end_op", status))]
    assert ops(daemon.calls()) == expected
    assert (Path(shell.workspace) / "sub").exists()


def test_empty_and_comment_lines_are_not_ops(daemon: DaemonThread, shell: GatedShell) -> None:
    assert shell.run("").exit_status == 0
    assert shell.run("# just a comment").exit_status == 0
    assert daemon.calls() == []


def test_a_refused_line_is_skipped_whole(daemon: DaemonThread, shell: GatedShell) -> None:
    result = shell.run(f"touch made; echo {REFUSE}; touch made2")
    assert result.exit_status == 126
    assert "[coagent] refused: the test daemon refuses this line (refused)" in result.output
    assert not (shell.workspace / "made").exists() and not (shell.workspace / "made2").exists()
    refused_in_subshell = shell.run(f"(touch made3); echo {REFUSE}")
    assert refused_in_subshell.exit_status == 126 and not (shell.workspace / "made3").exists()
    assert shell.run("touch ok && echo fine").output == "fine\n"  # the next line runs
    assert ops(daemon.calls()) == [
        ("begin_op", f"touch made; echo {REFUSE}; touch made2"),
        ("begin_op", f"(touch made3); echo {REFUSE}"),
        ("begin_op", "touch ok && echo fine"), ("end_op", 0)]


def test_notices_print_in_band_before_the_output(daemon: DaemonThread, shell: GatedShell) -> None:
    daemon.notify("alice", "file:a.txt", "bob", "bob rewrote a.txt after you read it")
    result = shell.run("echo hello")
    lines = result.output.splitlines()
    assert lines[0] == "[coagent] notice 1 (stale_read) on file:a.txt by bob: bob rewrote a.txt after you read it"
    assert lines[-1] == "hello"


def test_interactive_coagent_shell_gates_typed_lines(daemon: DaemonThread, workspace: Path) -> None:
    env = daemon.env(COAGENT_PROMPT="PROMPT<${COAGENT_STATUS}>")
    child = pexpect.spawn(sys.executable, ["-m", "coagent_cli.shell.cli", "shell", "--workspace", str(workspace)],
                          env=env, encoding="utf-8", timeout=10, echo=False)
    try:
        child.expect(r"PROMPT<(\d+)>")
        child.sendline("ls | wc -l && true")
        child.expect(r"PROMPT<(\d+)>")
        assert child.match.group(1) == "0"
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    wait_for(lambda: len(daemon.calls()) == 4)
    assert ops(daemon.calls()) == [("begin_op", "ls | wc -l && true"), ("end_op", 0),
                                   ("begin_op", "exit 3"), ("end_op", 3)]


# ---------------------------------------------------------------- driving: timeouts, caps, hygiene


def test_timeout_kills_the_job_and_the_shell_stays_usable(daemon: DaemonThread, workspace: Path) -> None:
    with GatedShell(workspace, daemon.env(), timeout=1) as sh:
        sh.run("export KEPT=yes")
        killed = sh.run("sleep 100")
        assert killed.timed_out and killed.exit_status == 137
        assert "timed out after 1s" in killed.output
        after = sh.run("echo $KEPT")
    assert (after.exit_status, after.output, after.timed_out) == (0, "yes\n", False)
    assert ops(daemon.calls())[-4:] == [("begin_op", "sleep 100"), ("end_op", 137),
                                        ("begin_op", "echo $KEPT"), ("end_op", 0)]


def test_timeout_interrupts_a_builtin_loop(workspace: Path) -> None:
    with GatedShell(workspace, {"PATH": os.environ["PATH"]}, timeout=0.5) as sh:
        looped = sh.run("while true; do :; done")
        assert looped.timed_out and looped.exit_status == 130
        assert sh.run("echo back").output == "back\n"


def test_output_is_capped_keeping_head_and_tail(workspace: Path) -> None:
    with GatedShell(workspace, {"PATH": os.environ["PATH"]}, max_output=2000) as sh:
        result = sh.run("seq 1 50000")
    assert result.truncated and result.exit_status == 0
    assert result.output.startswith("1\n2\n3\n")
    assert result.output.endswith("49999\n50000\n")
    assert "characters of output omitted" in result.output
    assert len(result.output) < 2200


def test_syntax_errors_are_caught_before_the_shell_sees_them(daemon: DaemonThread, shell: GatedShell) -> None:
    for line in ["echo 'open", "if true; then", "cat <<EOF\nno end"]:
        result = shell.run(line)
        assert result.exit_status == 2 and result.output, line
    assert daemon.calls() == []
    assert shell.run("echo still fine").output == "still fine\n"


def test_no_colours_no_pagers_no_prompts(shell: GatedShell) -> None:
    result = shell.run(r"printf '\033[1;31mred\033[0m\n'; echo $PAGER $GIT_PAGER $GIT_TERMINAL_PROMPT $TERM")
    assert result.output == "red\ncat cat 0 dumb\n"


def test_a_long_line_reaches_bash_whole(shell: GatedShell) -> None:
    word = "w" * 9000
    assert shell.run(f"echo {word} | wc -c").output.strip() == "9001"


def test_async_wrapper_runs_off_the_loop(daemon: DaemonThread, workspace: Path) -> None:
    async def main() -> list[ShellResult]:
        async with AsyncGatedShell(workspace, daemon.env(), timeout=5) as sh:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            ticker = asyncio.create_task(tick())
            results = [await sh.run("sleep 0.3; echo one"), await sh.run("echo two")]
            ticker.cancel()
            assert ticks >= 10  # the loop kept running while bash slept
            return results

    one, two = asyncio.run(main())
    assert (one.output, two.output) == ("one\n", "two\n")


# ---------------------------------------------------------------- degraded modes


def test_without_a_daemon_the_rc_says_it_is_not_gated(workspace: Path) -> None:
    with GatedShell(workspace, {"PATH": os.environ["PATH"]}) as sh:
        assert "commands are NOT gated" in sh.banner
        assert sh.run("echo ok; exit_status_probe=1").output == "ok\n"


def test_a_bash_without_the_debug_trap_veto_degrades_loudly(daemon: DaemonThread, workspace: Path) -> None:
    with GatedShell(workspace, daemon.env(COAGENT_FORCE_NO_VETO="1")) as sh:
        assert "cannot skip a command from its DEBUG trap" in sh.banner
        assert sh.run("echo $COAGENT_GATE_MODE").output == "unavailable\n"
    assert daemon.calls() == []


def test_an_unreachable_daemon_refuses_every_line(tmp_short: Path, workspace: Path) -> None:
    env = {"PATH": os.environ["PATH"], "COAGENT_SOCKET": str(tmp_short / "none.sock"),
           "COAGENT_AGENT": "alice", "COAGENT_TOKEN": "x", "COAGENT_PYTHON": sys.executable}
    with GatedShell(workspace, env) as sh:
        result = sh.run("touch nope")
    assert result.exit_status == 126 and "daemon unreachable" in result.output
    assert not (workspace / "nope").exists()
