"""The daemon's commands as a user meets them: start, status, log, undo, stop, recover,
and one clear line with exit code 2 for every bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import typer
from typer.testing import CliRunner

from coagent_cli.daemon.cli import daemon_app, log_cmd, recover_cmd, undo_cmd
from coagent_cli.daemon.client import Client
from coagent_cli.daemon.run import Tokens, daemon_info, paths_for

pytestmark = pytest.mark.timeout(60)

app = typer.Typer()
app.add_typer(daemon_app, name="daemon")
app.command("log")(log_cmd)
app.command("recover")(recover_cmd)
app.command("undo")(undo_cmd)


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cl", dir="/tmp"))
    (path / "f.txt").write_text("one\n")
    yield path
    if daemon_info(paths_for(path)) is not None:
        cli("daemon", "stop", "-w", str(path))
    shutil.rmtree(path, ignore_errors=True)


def agent_line(ws: Path, agent: str, line: str) -> None:
    paths = paths_for(ws)
    info = daemon_info(paths)
    assert info is not None
    with Client(info.socket, timeout=10) as c:
        c.hello(agent=agent, token=Tokens.load(paths.tokens).agents[agent])
        grant = c.begin_op(command=line, cwd=str(ws))
        if grant["action"] == "run":
            done = subprocess.run(["bash", "-c", line], cwd=ws, timeout=10)
            c.end_op(grant["op"], done.returncode)


def test_start_status_log_undo_agent_stop(workspace: Path) -> None:
    ws = str(workspace)
    code, out, err = cli("daemon", "start", "-w", ws, "--agent", "alice", "--agent", "bob")
    assert code == 0, err
    assert "tokens in" in out
    assert (paths_for(workspace).tokens.stat().st_mode & 0o777) == 0o600
    assert (paths_for(workspace).run.stat().st_mode & 0o777) == 0o700
    code, _, err = cli("daemon", "start", "-w", ws, "--agent", "alice")
    assert code == 2 and "already" in err and len(err.strip().splitlines()) == 1

    agent_line(workspace, "alice", "echo alice >> f.txt")
    agent_line(workspace, "bob", "echo bob >> f.txt")
    code, out, _ = cli("daemon", "status", "-w", ws)
    assert code == 0 and "alice" in out and "running" in out

    code, out, _ = cli("log", "-w", ws, "--json", "--agent", "alice")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows and all(r["agent"] == "alice" for r in rows)
    assert any(r["kind"] == "op_requested" and r["payload"]["op"]["label"] == "echo alice >> f.txt" for r in rows)
    code, out, _ = cli("log", "-w", ws)
    assert code == 0 and "op_requested" in out and "echo bob >> f.txt" in out

    code, out, err = cli("undo", "-w", ws, "--agent", "alice")
    assert code == 0, err
    assert "undid 1 ops of alice" in out
    assert (workspace / "f.txt").read_text() == "one\nbob\n"

    code, _, err = cli("undo", "-w", ws, "--all")
    assert code == 2 and "stop it first" in err
    code, out, _ = cli("daemon", "stop", "-w", ws)
    assert code == 0 and "stopped" in out
    code, out, _ = cli("daemon", "status", "-w", ws)
    assert code == 1 and "no daemon" in out

    code, out, _ = cli("undo", "-w", ws, "--all")
    assert code == 0, out
    assert (workspace / "f.txt").read_text() == "one\n"


def test_log_follow_is_bounded(workspace: Path) -> None:
    assert cli("daemon", "start", "-w", str(workspace), "--agent", "alice")[0] == 0
    code, out, _ = cli("log", "-w", str(workspace), "--follow", "--for", "0.3")
    assert code == 0 and "daemon_started" in out


@pytest.mark.parametrize("args, words", [
    (("daemon", "start", "--cc", "bogus"), "unknown protocol"),
    (("undo",), "exactly one of"),
    (("undo", "--all", "--agent", "x"), "exactly one of"),
    (("log",), "no run journal"),
    (("recover",), "no run journal"),
    (("undo", "--agent", "alice"), "none is running"),
    (("daemon", "start", "--agent", "a", "--agent", "a"), "distinct"),
])
def test_bad_input_is_one_line_and_exit_2(workspace: Path, args: tuple[str, ...], words: str) -> None:
    code, out, err = cli(*args, "-w", str(workspace))
    assert code == 2, (out, err)
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err + out


def test_missing_workspace_is_exit_2(tmp_path: Path) -> None:
    code, _, err = cli("daemon", "status", "-w", str(tmp_path / "nope"))
    assert code == 2 and "not a directory" in err
