"""`coagent monitor` as a command: finding the daemon, its token, errors, and a whole run."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from coagent_cli.daemon.client import Client
from coagent_cli.daemon.transport import EventHub, FakeHandler, Server
from coagent_cli.errors import UsageError
from coagent_cli.monitor.cli import find_socket, monitor_cmd, monitor_token

pytestmark = pytest.mark.timeout(30)

AGENTS = {"alice": "tok-a", "bob": "tok-b"}
MONITOR = "tok-mon"


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("monitor")(monitor_cmd)
    app.command("noop")(lambda: None)  # two commands, so `monitor` is a subcommand as in coagent
    return app


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="cgw"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_dir(workspace: Path) -> Path:
    directory = workspace / ".coagent" / "run"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def test_no_daemon_is_one_clear_line_and_exit_2(workspace: Path) -> None:
    result = CliRunner().invoke(cli(), ["monitor", "--workspace", str(workspace)], env={"COAGENT_SOCKET": ""})
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"coagent monitor: no daemon is running for {workspace} (no socket in {workspace}/.coagent/run)"]


def test_dead_socket_file_is_no_daemon_either(workspace: Path) -> None:
    path = run_dir(workspace) / "daemon.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # bound, never listening: what a killed daemon leaves
    (path.parent / "tokens.json").write_text(json.dumps({"monitor": MONITOR}))
    result = CliRunner().invoke(cli(), ["monitor", "-w", str(workspace)], env={"COAGENT_SOCKET": ""})
    assert result.exit_code == 2
    assert result.stderr == f"coagent monitor: no daemon is running (nothing answers on {path})\n"


def test_socket_and_token_discovery(workspace: Path) -> None:
    directory = run_dir(workspace)
    socks = []
    for name in ["other.sock", "daemon.sock"]:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(directory / name))
        socks.append(sock)
    (directory / "notes.txt").write_text("not a socket")
    try:
        assert find_socket(workspace, env={}) == directory / "daemon.sock"
        assert find_socket(workspace, env={"COAGENT_SOCKET": "/x/y.sock"}) == Path("/x/y.sock")
        with pytest.raises(UsageError) as info:
            monitor_token(directory / "daemon.sock", workspace, env={})
        assert info.value.code == "no_token"
        (directory / "tokens.json").write_text(json.dumps({"monitor": "m", "admin": "a"}))
        assert monitor_token(directory / "daemon.sock", workspace, env={}) == "m"
        assert monitor_token(directory / "daemon.sock", workspace,
                             env={"COAGENT_MONITOR_TOKEN": "e"}) == "e"
    finally:
        for sock in socks:
            sock.close()


class ServerThread:
    """A Server with the fake handler on its own loop in a background thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hub = EventHub()
        self.handler = FakeHandler(AGENTS, monitor_token=MONITOR, hub=self.hub)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.server = await Server(self.path, self.handler, hub=self.hub, grace=1.0).start()
        self._ready.set()
        await self.server.wait_closed()

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive() and self.loop is not None and self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self._thread.join(10)

    def subscribers(self) -> int:
        assert self.loop is not None
        async def count() -> int:
            return self.hub.subscribers
        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(10)


def test_plain_monitor_follows_a_run_until_the_daemon_stops(workspace: Path) -> None:
    directory = run_dir(workspace)
    (directory / "tokens.json").write_text(json.dumps({"monitor": MONITOR}))
    with ServerThread(directory / "daemon.sock") as srv:
        def drive() -> None:
            deadline = threading.Event()
            while srv.subscribers() < 1:
                assert not deadline.wait(0.01) and srv._thread.is_alive()
            for name in AGENTS:
                with Client(srv.path, timeout=10) as client:
                    client.hello(agent=name, token=AGENTS[name])
                    grant = client.begin_op(command=f"touch {name}.txt", cwd=str(workspace))
                    client.end_op(grant["op"], 0)
                    assert client.finish()["finished"]
            srv.stop()  # the run ends: the monitor's stream closes and it exits

        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        result = CliRunner().invoke(cli(), ["monitor", "--workspace", str(workspace), "--plain"],
                                    env={"COAGENT_SOCKET": "", "COAGENT_MONITOR_TOKEN": ""})
        driver.join(10)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "#3 applied  alice        op 1" in lines  # the fake daemon sends no command text
    assert any("finished bob" in line for line in lines)
    assert "coagent run summary (none)" in result.stdout
    assert all(line.isprintable() for line in lines)
