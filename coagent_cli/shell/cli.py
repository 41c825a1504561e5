"""`coagent shell`, `coagent exec`, `coagent inbox`, `coagent done`: an agent's side of the daemon.

Inside a process coagent launched for an agent, COAGENT_SOCKET, COAGENT_AGENT and
COAGENT_TOKEN are set, so none of these needs a flag. With no daemon reachable each
prints one line `error: ...` and exits 2. `coagent exec` exits with the command's status,
or 126 when the daemon refused it. Mount them on the main app with `register(app)`
(exec needs its context settings to take `CMD...` verbatim).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

import typer

from coagent_cli.daemon import ENV_AGENT, ENV_SOCKET, ENV_TOKEN
from coagent_cli.daemon.client import Client, RemoteError
from coagent_cli.cliutil import clean_errors
from coagent_cli.errors import UsageError
from coagent_cli.shell.gated import find_real_shell, rc_file

__all__ = ["shell_cmd", "exec_cmd", "inbox_cmd", "done_cmd", "register", "app", "notice_json",
           "format_notice", "REFUSED"]

REFUSED = 126
"""Exit status of a command the daemon refused (as the shell uses for "cannot execute")."""

NOTICE_FIELDS: dict[str, Any] = {"id": None, "key": "", "kind": "", "by": "", "op": None,
                                 "detail": "", "diff": None, "steps": []}
"""Every field of a notice as `coagent inbox --json` prints it, with its default."""



def _env(agent: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if agent:
        env[ENV_AGENT] = agent
    return env


def _workspace_daemon(workspace: Path, agent: str) -> dict[str, str]:
    """COAGENT_SOCKET and COAGENT_TOKEN for `agent` from the workspace's running daemon."""
    from coagent_cli.daemon.run import Tokens, daemon_info, paths_for

    paths = paths_for(workspace)
    info = daemon_info(paths)
    if info is None:
        raise UsageError(f"no coagent daemon is running for {paths.workspace} (start one with `coagent daemon start`)")
    token = Tokens.load(paths.tokens).agents.get(agent)
    if token is None:
        raise UsageError(f"the daemon of {paths.workspace} has no agent {agent!r}")
    return {ENV_SOCKET: str(info.socket), ENV_TOKEN: token}


def _connect(env: Mapping[str, str], timeout: float | None = 30.0) -> Client:
    return Client.from_env(env, timeout=timeout)


# ---------------------------------------------------------------- notices


def notice_json(notice: Mapping[str, Any]) -> dict[str, Any]:
    """A notice with every documented field present (`NOTICE_FIELDS` order)."""
    return {name: notice.get(name, default) for name, default in NOTICE_FIELDS.items()}


def format_notice(notice: Mapping[str, Any]) -> str:
    """A notice for a person: a `[coagent]` header line, then the diff if there is one."""
    detail = notice.get("detail") or "an earlier agent changed what you read"
    head = (f"[coagent] notice {notice.get('id')} ({notice.get('kind')}) on {notice.get('key')} "
            f"by {notice.get('by')}: {detail}")
    diff = (notice.get("diff") or "").rstrip("\n")
    return head + ("\n" + diff if diff else "")


def _print_notices(notices: list[dict[str, Any]], *, err: bool) -> None:
    for notice in notices:
        typer.echo(format_notice(notice), err=err)


# ---------------------------------------------------------------- commands


@clean_errors
def shell_cmd(
    agent: Optional[str] = typer.Option(None, "--agent", help="Agent name (default: $COAGENT_AGENT)."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", help="Start in this directory."),
) -> None:
    """An interactive bash whose every command line is gated by the daemon.

    Inside an agent's process the COAGENT_* environment says which daemon and agent;
    otherwise (a person at a terminal) name the agent, and the workspace's running
    daemon and that agent's token are found under <workspace>/.coagent/run/."""
    env = _env(agent)
    if workspace is not None and not workspace.is_dir():
        raise UsageError(f"workspace is not a directory: {workspace}")
    if ENV_SOCKET not in env and agent:
        env.update(_workspace_daemon(workspace or Path.cwd(), agent))
    _connect(env, timeout=10).close()  # fail here, with one line, rather than in the rc
    if env.get("COAGENT_GATED"):
        typer.echo("[coagent] inside a gated command already: this shell is covered by it", err=True)
    env.setdefault("COAGENT_PYTHON", sys.executable)
    if workspace is not None:
        os.chdir(workspace)
    bash = find_real_shell("bash", env.get("PATH"))
    os.execve(bash, ["bash", "--noprofile", "--rcfile", str(rc_file()), "-i"], env)


@clean_errors
def exec_cmd(
    command: list[str] = typer.Argument(..., metavar="CMD...", help="A command line, or a command and its arguments."),
    agent: Optional[str] = typer.Option(None, "--agent", help="Agent name (default: $COAGENT_AGENT)."),
) -> None:
    """Run one command line as one gated op and exit with its status."""
    line = command[0] if len(command) == 1 else shlex.join(command)
    env = _env(agent)
    if env.get("COAGENT_GATED"):  # an enclosing gated line covers us; a second op could deadlock on its latches
        raise typer.Exit(_run_line(line, env))
    client = _connect(env, timeout=None)  # begin_op may be held until earlier agents finish
    try:
        raise typer.Exit(_gated(client, line, env))
    finally:
        client.close()


def _gated(client: Client, line: str, env: dict[str, str]) -> int:
    try:
        grant = client.begin_op(command=line, cwd=os.getcwd())
    except RemoteError as exc:
        typer.echo(f"[coagent] refused: {exc} ({exc.code})", err=True)
        return REFUSED
    _print_notices(grant.get("notices") or [], err=True)
    action, status = grant.get("action"), grant.get("exit_status")
    if action == "served":
        sys.stdout.write(grant.get("content") or "")
        return status or 0
    if action != "run":
        typer.echo("[coagent] refused: the daemon skipped this command", err=True)
        return REFUSED if status is None else status
    status = _run_line(line, env)
    ended = client.end_op(grant["op"], min(status, 255))
    if ended.get("pending_notices"):
        typer.echo(f"[coagent] {ended['pending_notices']} notice(s) pending: run `coagent inbox`", err=True)
    return status


def _run_line(line: str, env: Mapping[str, str]) -> int:
    """`bash -c line` in the current directory, output straight through; its status
    (128+n if killed by signal n). ^C reaches the child; we stay to report it."""
    sys.stdout.flush()
    sys.stderr.flush()
    child = subprocess.Popen([find_real_shell("bash", env.get("PATH")), "-c", line],
                             env={**env, "COAGENT_GATED": "1"})
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        status = child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return 128 - status if status < 0 else status


@clean_errors
def inbox_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of notices."),
    peek: bool = typer.Option(False, "--peek", help="Leave the notices undelivered."),
) -> None:
    """Pending notices for the calling agent (delivered unless --peek)."""
    with _connect(os.environ) as client:
        notices = [notice_json(n) for n in client.inbox(peek=peek).get("notices") or []]
    if as_json:
        typer.echo(json.dumps(notices, indent=2))
    elif not notices:
        typer.echo("[coagent] no pending notices")
    else:
        _print_notices(notices, err=False)


@clean_errors
def done_cmd() -> None:
    """Declare the calling agent finished. Exits 1 (and prints them) if notices are pending."""
    with _connect(os.environ) as client:
        reply = client.finish()
    if reply.get("finished"):
        typer.echo("[coagent] finished")
        return
    notices = [notice_json(n) for n in reply.get("notices") or []]
    _print_notices(notices, err=False)
    typer.echo(f"[coagent] not finished: {len(notices)} notice(s) pending; handle them, then run "
               "`coagent done` again", err=True)
    raise typer.Exit(1)


# ---------------------------------------------------------------- mounting

EXEC_SETTINGS = {"allow_interspersed_args": False, "ignore_unknown_options": True}


def register(target: typer.Typer) -> None:
    """Mount the four commands on `target` (the main `coagent` app)."""
    target.command("shell")(shell_cmd)
    target.command("exec", context_settings=EXEC_SETTINGS)(exec_cmd)
    target.command("inbox")(inbox_cmd)
    target.command("done")(done_cmd)


app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="An agent's side of the coagent daemon: shell, exec, inbox, done.")
register(app)

if __name__ == "__main__":
    app()
