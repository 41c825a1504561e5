"""Running one command line with `bash -c`: bounded in time and in captured output.

The command runs in its own session (process group), so a timeout kills everything it
started, not just bash. stdout and stderr go to one temporary file, not a pipe: a chatty
command can never block on a full pipe, and only the first `limit` bytes are kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from coagent_cli.errors import ExecutionError

DEFAULT_TIMEOUT = 600.0
OUTPUT_LIMIT = 256 * 1024
TIMEOUT_STATUS = 124  # what coreutils `timeout` reports
# Variables that would send git (or bash start-up) somewhere other than the user's tree.
_DROPPED_ENV = ("BASH_ENV", "ENV", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE",
                "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE",
                "GIT_COMMON_DIR", "CDPATH")


@dataclass(frozen=True)
class Completed:
    exit_status: int
    output: str
    timed_out: bool = False


def run_line(line: str, cwd: Path, *, timeout: float | None = None,
             limit: int = OUTPUT_LIMIT, env: Mapping[str, str] | None = None,
             on_start: Callable[[int], None] | None = None) -> Completed:
    """Run `line` with `bash -c` in `cwd`; a timeout is a result (exit 124), not an error.
    `on_start(pgid)` is told the command's process group as soon as it exists (so that
    `coagent recover` can kill it if this process dies first)."""
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-c", line], cwd=cwd, env=_environment(env),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        except OSError as exc:
            raise ExecutionError(f"could not run bash in {cwd}: {exc}") from exc
        if on_start is not None:
            on_start(proc.pid)
        timed_out = _wait(proc, timeout if timeout is not None else DEFAULT_TIMEOUT)
        out.seek(0)
        data = out.read(limit + 1)
    text = data[:limit].decode("utf-8", "replace")
    if len(data) > limit:
        text += f"\n[output truncated at {limit} bytes]"
    if timed_out:
        return Completed(TIMEOUT_STATUS, text + f"\n[killed after {timeout:g}s]", True)
    return Completed(proc.returncode, text)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()
        return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended on its own in the meantime


def start_time(pid: int) -> int | None:
    """The kernel's start time of a process (clock ticks since boot), None if it is gone:
    with the pid it names one process, whatever pids are reused later."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def kill_leftover(pgid: int, started: int | None, *, wait: float = 5.0) -> bool:
    """Kill the process group a dead daemon left running (if its leader is still the
    process that was started); True when something was killed."""
    if started is None or start_time(pgid) != started:
        return False
    _kill_group(pgid)
    deadline = time.monotonic() + wait
    while start_time(pgid) == started and time.monotonic() < deadline:
        time.sleep(0.01)
    return True


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "PAGER": "cat"})
    env.update(extra or {})
    return env
