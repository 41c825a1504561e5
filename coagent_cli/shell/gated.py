"""A persistent gated bash for built-in agents, driven by pexpect.

`GatedShell` starts `bash -i` with `shims/coagent.bashrc`, so every command line it runs
is gated through the daemon by the rc itself (one begin_op/end_op per line). What this
module adds is the driving: a fixed prompt that carries the line's exit status (no extra
`echo $?` line, which the rc would gate as a second op), a `bash -n` check before a line
is sent, a per-line timeout that kills the foreground process group, output capped with
head and tail kept, ANSI sequences stripped, and an environment where nothing waits on a
tty (PAGER=cat, GIT_TERMINAL_PROMPT=0, TERM=dumb, ...).

    with GatedShell(workspace, env) as shell:
        result = shell.run("pytest -q | tail -3")

`AsyncGatedShell` runs the same blocking work in a thread (asyncio.to_thread).

Also here: where the shims live (`shims_dir`, `rc_file`), how to find the real bash
behind them (`find_real_shell`) and the environment that puts them first on PATH
(`shim_environment`).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pexpect

import coagent_cli
from coagent_cli.errors import ExecutionError, UsageError

__all__ = [
    "ShellResult", "GatedShell", "AsyncGatedShell", "shims_dir", "rc_file", "gate_script",
    "find_real_shell", "shim_environment", "NO_TTY_ENV",
]

NO_TTY_ENV: dict[str, str] = {
    "PAGER": "cat", "GIT_PAGER": "cat", "MANPAGER": "cat", "SYSTEMD_PAGER": "",
    "GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true",
    "TERM": "dumb", "NO_COLOR": "1", "DEBIAN_FRONTEND": "noninteractive", "PIP_NO_INPUT": "1",
    "PYTHONUNBUFFERED": "1",
}
"""Set in every GatedShell so that no program pages, prompts, or paints colours."""

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_WINDOW = 512          # characters of the stream end searched for the prompt
_KILL_GRACE = 5.0      # seconds a killed command gets to give the prompt back


# ---------------------------------------------------------------- where the shims are


def shims_dir() -> Path:
    """Where the shims are: `shims/` at the repository root for a checkout (an editable
    install), else `<prefix>/share/coagent/shims`, where a wheel installs them (the
    data-files of pyproject.toml)."""
    checkout = Path(coagent_cli.__file__).resolve().parents[1] / "shims"
    if (checkout / "coagent.bashrc").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "coagent" / "shims"


def rc_file() -> Path:
    return shims_dir() / "coagent.bashrc"


def gate_script() -> Path:
    return shims_dir() / "bin" / "coagent-gate"


def find_real_shell(name: str = "bash", path: str | None = None) -> str:
    """The first `name` on PATH that is not a coagent shim (so the shims never recurse)."""
    shim_bin = (shims_dir() / "bin").resolve()
    for folder in (os.environ.get("PATH", "") if path is None else path).split(os.pathsep):
        candidate = Path(folder or ".") / name
        if candidate.resolve().parent == shim_bin or not os.access(candidate, os.X_OK):
            continue
        if candidate.is_file():
            return str(candidate)
    raise UsageError(f"no {name} found on PATH", code="no_shell")


def shim_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with the shims first on PATH, for an external agent's process: its
    `bash -c LINE` and `sh -c LINE` are then gated one op per line."""
    out = {k: v for k, v in env.items() if k != "COAGENT_GATED"}
    path = out.get("PATH", os.defpath)
    out["COAGENT_REAL_BASH"] = out.get("COAGENT_REAL_BASH") or find_real_shell("bash", path)
    out["COAGENT_REAL_SH"] = out.get("COAGENT_REAL_SH") or find_real_shell("sh", path)
    out.setdefault("COAGENT_PYTHON", sys.executable)
    out["PATH"] = os.pathsep.join([str(shims_dir() / "bin"), path])
    return out


# ---------------------------------------------------------------- results and capture


@dataclass(frozen=True)
class ShellResult:
    """What one command line did. `exit_status` is the status reported to the daemon
    (126 when the daemon refused the line, 2 for a syntax error, 128+n when killed)."""

    exit_status: int
    output: str
    truncated: bool = False
    timed_out: bool = False


class _Capture:
    """The output of one line, bounded: the first `cap//2` characters and a rolling tail;
    what falls between is counted, not kept."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap // 2
        self.tail_cap = cap - self.head_cap
        self.head = ""
        self.tail = ""
        self.omitted = 0

    def add(self, chunk: str) -> None:
        room = self.head_cap - len(self.head)
        if room > 0 and not self.tail:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        excess = len(self.tail) - (self.tail_cap + _WINDOW)
        if excess > 0:
            self.omitted += excess
            self.tail = self.tail[excess:]

    def window(self) -> str:
        if len(self.tail) >= _WINDOW:
            return self.tail[-_WINDOW:]
        return (self.head + self.tail)[-_WINDOW:]

    def drop_last(self, count: int) -> None:
        cut = min(count, len(self.tail))
        self.tail = self.tail[: len(self.tail) - cut]
        self.head = self.head[: len(self.head) - (count - cut)]

    def text(self) -> tuple[str, bool]:
        excess = max(0, len(self.tail) - self.tail_cap)
        omitted = self.omitted + excess
        if not omitted:
            return self.head + self.tail, False
        note = f"\n[coagent] ... {omitted} characters of output omitted ...\n"
        return self.head + note + self.tail[excess:], True


def clean(text: str) -> str:
    """ANSI sequences stripped, CRLF and stray CR made newlines."""
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


# ---------------------------------------------------------------- the shell


class GatedShell:
    """A persistent interactive bash with the coagent rc. Not thread-safe: one line at a
    time. `env` should hold COAGENT_SOCKET/AGENT/TOKEN for gating; without them the rc
    runs ungated (it says so in `banner`)."""

    def __init__(self, workspace: str | os.PathLike[str], env: Mapping[str, str], *,
                 prompt_marker: str | None = None, timeout: float = 120.0,
                 max_output: int = 100_000, start_timeout: float = 15.0) -> None:
        self.workspace = Path(workspace)
        self.marker = prompt_marker or f"__COAGENT_{secrets.token_hex(6)}__"
        if not re.fullmatch(r"[A-Za-z0-9_]{8,64}", self.marker):
            raise UsageError("prompt_marker must be 8-64 letters, digits or underscores")
        self.timeout = timeout
        self.max_output = max_output
        self.start_timeout = start_timeout
        self.bash = find_real_shell("bash", env.get("PATH"))
        self.env = self._environment(env)
        self._prompt = re.compile(re.escape(self.marker) + r"<(\d+)>")
        self._child: pexpect.spawn | None = None
        self.banner = ""  # what the shell printed before its first prompt

    def _environment(self, env: Mapping[str, str]) -> dict[str, str]:
        out = {k: v for k, v in env.items() if k != "COAGENT_GATED"}
        out.update(NO_TTY_ENV)
        out.setdefault("COAGENT_PYTHON", sys.executable)
        out["COAGENT_PROMPT"] = self.marker + "<${COAGENT_STATUS}>"
        return out

    # lifecycle

    def start(self) -> "GatedShell":
        if not self.workspace.is_dir():
            raise UsageError(f"workspace is not a directory: {self.workspace}")
        try:
            self._child = pexpect.spawn(
                self.bash, ["--noprofile", "--noediting", "--rcfile", str(rc_file()), "-i"],
                cwd=str(self.workspace), env=self.env, encoding="utf-8", codec_errors="replace",
                echo=False, dimensions=(50, 250), timeout=None)
        except pexpect.ExceptionPexpect as exc:
            raise ExecutionError(f"cannot start bash: {exc}", code="shell_start") from None
        self._child.delaybeforesend = None
        self._raw_tty()
        status, banner, _, timed_out = self._read_to_prompt(self.start_timeout)
        if timed_out:
            self.close()
            raise ExecutionError(f"bash gave no prompt within {self.start_timeout}s: {banner[-300:]}",
                                 code="shell_start")
        self.banner = clean(banner)
        return self

    def _raw_tty(self) -> None:
        """No canonical mode: a line longer than the tty's 4 KiB line buffer reaches bash whole."""
        assert self._child is not None
        attrs = termios.tcgetattr(self._child.child_fd)
        attrs[3] &= ~(termios.ICANON | termios.ECHO)
        attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
        termios.tcsetattr(self._child.child_fd, termios.TCSANOW, attrs)

    def close(self) -> None:
        """End bash (the rc closes the line's op, the helper its connection)."""
        child, self._child = self._child, None
        if child is None:
            return
        try:
            if child.isalive():
                child.kill(signal.SIGHUP)  # ^D means nothing to a non-canonical tty
                deadline = time.monotonic() + 2.0
                while child.isalive() and time.monotonic() < deadline:
                    time.sleep(0.02)
            child.close(force=True)
        except pexpect.ExceptionPexpect:
            pass

    def __enter__(self) -> "GatedShell":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._child is not None and self._child.isalive()

    # running lines

    def run(self, line: str, timeout: float | None = None) -> ShellResult:
        """Run one command line (it may span several lines of text) and wait for it."""
        problem = self.syntax_error(line)
        if problem is not None:
            return ShellResult(2, problem)
        if not self.alive:
            self.close()
            self.start()
        assert self._child is not None
        self._child.send(line.rstrip("\n") + "\n")
        limit = self.timeout if timeout is None else timeout
        status, output, truncated, timed_out = self._read_to_prompt(limit)
        if timed_out:
            status, output, truncated = self._recover(output, truncated, limit)
        return ShellResult(status, clean(output), truncated, timed_out)

    def syntax_error(self, line: str) -> str | None:
        """`bash -n`'s complaint about `line`, or None. An unterminated here-document
        counts: the interactive shell would wait for its end forever."""
        if not line.strip():
            return None
        try:
            done = subprocess.run([self.bash, "--norc", "-n"], input=line, capture_output=True,
                                  text=True, timeout=10, env={"PATH": self.env.get("PATH", "")})
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"[coagent] could not syntax-check the line: {exc}"
        if done.returncode != 0 or "here-document" in done.stderr:
            return done.stderr.strip() or "syntax error"
        return None

    def _read_to_prompt(self, limit: float) -> tuple[int, str, bool, bool]:
        """Read until the prompt; (status, output, truncated, timed_out)."""
        assert self._child is not None
        capture = _Capture(self.max_output)
        deadline = time.monotonic() + limit
        while True:
            match = self._prompt.search(capture.window())
            if match is not None:
                capture.drop_last(len(capture.window()) - match.start())
                text, truncated = capture.text()
                return int(match.group(1)), text, truncated, False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                text, truncated = capture.text()
                return -1, text, truncated, True
            try:
                capture.add(self._child.read_nonblocking(65536, timeout=min(remaining, 1.0)))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                text, truncated = capture.text()
                return self._exit_code(), text, truncated, False

    def _exit_code(self) -> int:
        assert self._child is not None
        self._child.close(force=True)
        if self._child.signalstatus is not None:
            return 128 + self._child.signalstatus
        return self._child.exitstatus or 0

    def _recover(self, output: str, truncated: bool, limit: float) -> tuple[int, str, bool]:
        """After a timeout: kill the foreground job (its whole process group), or
        interrupt bash itself if it is the one busy; restart bash if nothing helps."""
        assert self._child is not None
        note = f"\n[coagent] timed out after {limit:g}s: the command was killed"
        deadline = time.monotonic() + _KILL_GRACE
        while time.monotonic() < deadline:
            self._interrupt()
            status, more, more_truncated, timed_out = self._read_to_prompt(0.5)
            output, truncated = output + more, truncated or more_truncated
            if not timed_out:
                return (status if status > 0 else 124), output + note + "\n", truncated
        self.close()
        self.start()
        return 124, output + note + "; the shell was restarted (its state is lost)\n", truncated

    def _interrupt(self) -> None:
        """SIGKILL the foreground job's process group; if bash itself is the busy one (a
        loop of builtins), interrupt it instead: SIGINT aborts the line, not the shell.
        Repeated by the caller: a SIGINT that lands while the DEBUG trap runs can be lost."""
        assert self._child is not None
        try:
            group = os.tcgetpgrp(self._child.child_fd)
        except OSError:
            group = self._child.pid
        try:
            if group != self._child.pid:
                os.killpg(group, signal.SIGKILL)
            else:
                self._child.sendintr()
        except (OSError, pexpect.ExceptionPexpect):
            pass


class AsyncGatedShell:
    """`GatedShell` for asyncio code: each blocking call runs in a worker thread, one at
    a time (a lock orders them)."""

    def __init__(self, workspace: str | os.PathLike[str], env: Mapping[str, str], **options: object) -> None:
        self.shell = GatedShell(workspace, env, **options)  # type: ignore[arg-type]
        self._lock = asyncio.Lock()

    async def start(self) -> "AsyncGatedShell":
        async with self._lock:
            await asyncio.to_thread(self.shell.start)
        return self

    async def run(self, line: str, timeout: float | None = None) -> ShellResult:
        async with self._lock:
            return await asyncio.to_thread(self.shell.run, line, timeout)

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self.shell.close)

    async def __aenter__(self) -> "AsyncGatedShell":
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
