"""The `bash`/`sh` shims on PATH and `coagent exec/inbox/done`, as real subprocesses
against the recording stand-in daemon of test_gated_shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coagent_cli.shell.gated import find_real_shell, shim_environment, shims_dir
from test_gated_shell import REFUSE, DaemonThread, daemon, ops, tmp_short, workspace  # noqa: F401

pytestmark = pytest.mark.timeout(30)

CLI = [sys.executable, "-m", "coagent_cli.shell.cli"]


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=20)


@pytest.fixture
def agent_env(daemon: DaemonThread) -> dict[str, str]:
    return shim_environment(daemon.env())


# ---------------------------------------------------------------- shims


def test_bash_dash_c_through_the_shim_is_one_gated_op(daemon: DaemonThread, agent_env: dict[str, str],
                                                      workspace: Path) -> None:
    done = run(["bash", "-c", "echo hi > f"], agent_env, workspace)
    assert done.returncode == 0, done.stderr
    assert (workspace / "f").read_text() == "hi\n"
    assert ops(daemon.calls()) == [("begin_op", "echo hi > f"), ("end_op", 0)]


def test_the_shim_passes_options_and_exit_status(daemon: DaemonThread, agent_env: dict[str, str],
                                                 workspace: Path) -> None:
    assert run(["bash", "-ec", "false; exit 0"], agent_env, workspace).returncode == 1
    assert run(["sh", "-c", "exit 7"], agent_env, workspace).returncode == 7
    script = workspace / "s.sh"
    script.write_text("echo from-script $1\n")
    assert run(["bash", "s.sh", "arg"], agent_env, workspace).stdout == "from-script arg\n"
    assert ops(daemon.calls()) == [("begin_op", "false; exit 0"), ("end_op", 1),
                                   ("begin_op", "exit 7"), ("end_op", 7),
                                   ("begin_op", "bash s.sh arg"), ("end_op", 0)]


def test_a_refused_line_does_not_run(daemon: DaemonThread, agent_env: dict[str, str], workspace: Path) -> None:
    done = run(["bash", "-c", f"touch made; echo {REFUSE}"], agent_env, workspace)
    assert done.returncode == 126
    assert done.stderr.startswith("[coagent] refused:")
    assert not (workspace / "made").exists()


def test_nested_shells_inside_a_gated_line_are_not_gated_again(daemon: DaemonThread, agent_env: dict[str, str],
                                                               workspace: Path) -> None:
    done = run(["bash", "-c", "bash -c 'sh -c \"echo deep\"'"], agent_env, workspace)
    assert done.stdout == "deep\n"
    assert [c.type for c in daemon.calls()] == ["begin_op", "end_op"]


def test_without_a_daemon_the_shim_is_the_real_shell(workspace: Path) -> None:
    env = shim_environment({k: v for k, v in os.environ.items() if not k.startswith("COAGENT_")})
    done = run(["bash", "-c", "echo $BASH_VERSION"], env, workspace)
    assert done.returncode == 0 and done.stdout.strip()


def test_the_real_shell_is_never_a_shim() -> None:
    path = os.pathsep.join([str(shims_dir() / "bin"), os.environ["PATH"]])
    for name in ("bash", "sh"):
        assert Path(find_real_shell(name, path)).resolve().parent != (shims_dir() / "bin").resolve()


# ---------------------------------------------------------------- coagent exec / inbox / done


def test_exec_returns_the_status_and_prints_notices_to_stderr_first(daemon: DaemonThread, workspace: Path) -> None:
    daemon.notify("alice", "file:a.txt", "bob", "bob changed a.txt")
    done = run(CLI + ["exec", "--", "echo out; echo err >&2; exit 5"], daemon.env(), workspace)
    assert done.returncode == 5
    assert done.stdout == "out\n"
    assert done.stderr.splitlines() == ["[coagent] notice 1 (stale_read) on file:a.txt by bob: bob changed a.txt",
                                        "err"]
    assert ops(daemon.calls()) == [("begin_op", "echo out; echo err >&2; exit 5"), ("end_op", 5)]


def test_exec_joins_several_words_into_one_quoted_line(daemon: DaemonThread, workspace: Path) -> None:
    done = run(CLI + ["exec", "--", "printf", "%s|", "a b", "c"], daemon.env(), workspace)
    assert (done.returncode, done.stdout) == (0, "a b|c|")
    assert daemon.calls()[0].command == "printf '%s|' 'a b' c"


def test_exec_refused(daemon: DaemonThread, workspace: Path) -> None:
    done = run(CLI + ["exec", "--", f"touch made; echo {REFUSE}"], daemon.env(), workspace)
    assert done.returncode == 126 and "[coagent] refused:" in done.stderr
    assert not (workspace / "made").exists()


@pytest.mark.parametrize("command", [["exec", "--", "true"], ["inbox"], ["done"]])
def test_no_daemon_is_one_error_line_and_exit_2(command: list[str], tmp_short: Path) -> None:
    bare = {k: v for k, v in os.environ.items() if not k.startswith("COAGENT_")}
    for env in (bare, {**bare, "COAGENT_SOCKET": str(tmp_short / "gone.sock"), "COAGENT_AGENT": "alice",
                       "COAGENT_TOKEN": "t"}):
        done = run(CLI + command, env, tmp_short)
        assert done.returncode == 2
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: ")


def test_inbox_json_lists_notices_and_delivers_them(daemon: DaemonThread, workspace: Path) -> None:
    daemon.notify("alice", "file:b.txt", "bob", "bob appended a line")
    peeked = json.loads(run(CLI + ["inbox", "--json", "--peek"], daemon.env(), workspace).stdout)
    assert [(n["id"], n["key"], n["kind"], n["by"], n["detail"], n["diff"]) for n in peeked] == [
        (1, "file:b.txt", "stale_read", "bob", "bob appended a line", None)]
    assert json.loads(run(CLI + ["inbox", "--json"], daemon.env(), workspace).stdout) == peeked
    assert json.loads(run(CLI + ["inbox", "--json"], daemon.env(), workspace).stdout) == []


def test_done_finishes_unless_notices_are_pending(daemon: DaemonThread, workspace: Path) -> None:
    daemon.notify("alice", "file:c.txt", "bob", "bob rewrote c.txt")
    pending = run(CLI + ["done"], daemon.env(), workspace)
    assert pending.returncode == 1 and "not finished" in pending.stderr and "file:c.txt" in pending.stdout
    run(CLI + ["inbox"], daemon.env(), workspace)
    finished = run(CLI + ["done"], daemon.env(), workspace)
    assert (finished.returncode, finished.stdout) == (0, "[coagent] finished\n")
