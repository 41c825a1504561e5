"""`coagent monitor`: attach to a workspace's running daemon and show the live view.

Assumptions about the daemon's run directory (`<workspace>/.coagent/run/`), to be kept in
step with the daemon (issue 3):
- the socket is the one socket file there, `daemon.sock` preferred when there are
  several (else the newest); `$COAGENT_SOCKET` overrides the search;
- the monitor token is key "monitor" of `tokens.json` in the socket's directory (or the
  workspace's run directory); `$COAGENT_MONITOR_TOKEN` overrides it.

The command is read-only (role `monitor`): it subscribes to events on one connection and
polls `status` on a second one for the fields events do not carry (tokens, cost, ...).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import typer
from rich.console import Console

from coagent_cli.daemon import ENV_SOCKET
from coagent_cli.daemon.client import AsyncClient, RemoteError
from coagent_cli.daemon.wire import Snapshot
from coagent_cli.errors import CoagentError, UsageError, WireError
from coagent_cli.monitor.view import run_view

__all__ = ["monitor_cmd", "find_socket", "monitor_token", "attach"]

ENV_MONITOR_TOKEN = "COAGENT_MONITOR_TOKEN"
RUN_DIR = Path(".coagent") / "run"
SOCKET_NAME = "daemon.sock"
TOKENS_FILE = "tokens.json"
CONNECT_TIMEOUT = 5.0
EXIT_NO_DAEMON = 2


def find_socket(workspace: Path, env: Mapping[str, str] = os.environ) -> Path:
    """The daemon socket of `workspace`, or UsageError `no_daemon`."""
    if env.get(ENV_SOCKET):
        return Path(env[ENV_SOCKET])
    run_dir = workspace / RUN_DIR
    try:
        sockets = [p for p in run_dir.iterdir() if stat.S_ISSOCK(p.lstat().st_mode)]
    except OSError:
        sockets = []
    if not sockets:
        raise UsageError(f"no daemon is running for {workspace} (no socket in {run_dir})",
                         code="no_daemon")
    named = [p for p in sockets if p.name == SOCKET_NAME]
    return named[0] if named else max(sockets, key=lambda p: p.lstat().st_mtime)


def monitor_token(socket_path: Path, workspace: Path, env: Mapping[str, str] = os.environ) -> str:
    """The run's monitor token (see the module doc), or UsageError `no_token`."""
    if env.get(ENV_MONITOR_TOKEN):
        return env[ENV_MONITOR_TOKEN]
    for directory in dict.fromkeys([socket_path.parent, workspace / RUN_DIR]):
        token = _token_in(directory / TOKENS_FILE)
        if token:
            return token
    raise UsageError(f"no monitor token: no {TOKENS_FILE} with a 'monitor' key next to "
                     f"{socket_path} (or set {ENV_MONITOR_TOKEN})", code="no_token")


def _token_in(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", code="no_token") from None
    token = data.get("monitor") if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None


async def _connect(socket_path: Path, token: str) -> AsyncClient:
    client = await AsyncClient.connect(socket_path, timeout=CONNECT_TIMEOUT)
    try:
        await client.hello(role="monitor", token=token)
    except BaseException:
        await client.close()
        raise
    return client


async def attach(socket_path: Path, token: str, console: Console, *, live: bool,
                 stop: asyncio.Event | None = None) -> None:
    """Connect as a monitor and show the run until it ends or `stop` is set."""
    stream = await _connect(socket_path, token)
    poller = await _connect(socket_path, token)

    async def poll() -> Snapshot:
        return (await poller.status()).snapshot

    try:
        state = await run_view(stream.subscribe(), console, live=live, stop=stop, poll=poll)
    finally:
        await asyncio.gather(stream.close(), poller.close())
    if state.error is not None and not state.ended:
        raise state.error


def _explain(exc: CoagentError, socket_path: Path | None) -> str:
    if isinstance(exc, RemoteError):
        return f"the daemon refused the monitor: {exc.message} ({exc.code})"
    if isinstance(exc, WireError) and exc.code == "unreachable":
        return f"no daemon is running (nothing answers on {socket_path})"
    return exc.message


def monitor_cmd(
    workspace: Path = typer.Option(Path("."), "--workspace", "-w", help="The workspace whose run to watch.",
                                   file_okay=False),
    plain: bool = typer.Option(False, "--plain", help="One plain line per event (default when not a TTY)."),
) -> None:
    """Watch a running coagent daemon: agents, contention, events and totals, live."""
    console = Console(highlight=False)
    socket_path: Path | None = None
    try:
        socket_path = find_socket(workspace)
        token = monitor_token(socket_path, workspace)
        asyncio.run(attach(socket_path, token, console, live=console.is_terminal and not plain))
    except KeyboardInterrupt:
        return
    except CoagentError as exc:
        typer.echo(f"coagent monitor: {_explain(exc, socket_path)}", err=True)
        raise typer.Exit(EXIT_NO_DAEMON) from None
