"""DaemonEnvironment: the agents' Environment over the daemon's socket.

Each bash command line is one op: `begin_op(command, cwd)`; on `run` the line runs here
and `end_op(exit status)` reports it; on `served` or `skip` the daemon's answer stands in
for the run. Lines run in one persistent bash per agent (a `GatedShell`), so `cd` and
variables carry over from line to line; `cwd` is that shell's current directory. The
shell is started ungated (no COAGENT_SOCKET/TOKEN in its environment): this class does
the gating, one op per line, and keeps the op ids that notices name. The shell ends when
the daemon accepts `finish` (a later resume starts a new one in the same directory) and
on `close`. A declared tool call is performed by the daemon itself (`begin_op(tool=...)`
answered `served` with the output). Notices come
from the agent's inbox; finishing is `finish`; `retract` undoes some of the agent's own
ops for good (the daemon re-applies later writes of others on top and tells them). A
refused op reaches the agent loop as a CoagentError, which the loop shows the model as an
error observation.

The environment also keeps what a report needs: how long the agent waited for grants
(waiting) and ran commands (executing); the rest of its time is thinking.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from coagent_cli.agents.environment import Notice, Observation, ToolSchema
from coagent_cli.daemon.client import Client
from coagent_cli.errors import CoagentError
from coagent_cli.shell.gated import GatedShell, ShellResult
from coagent_cli.tools import ToolLibrary
from coagent_cli.tools.execute import DEFAULT_TIMEOUT, OUTPUT_LIMIT

__all__ = ["DaemonEnvironment", "AgentAddress", "to_notice", "TIMED_OUT"]

TIMED_OUT = 124  # exit status reported for a command line killed by its timeout (as timeout(1))
SHELL_LOST = 126  # exit status reported for a line the shell could not run (it would not start)

# Left out of the shell's environment: the daemon's address (so the rc runs ungated: this
# class gates each line itself) and what would make bash or git read elsewhere.
_SHELL_DROPPED_ENV = frozenset({
    "COAGENT_SOCKET", "COAGENT_TOKEN", "COAGENT_GATED", "COAGENT_RESUME", "BASH_ENV", "ENV",
    "CDPATH", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_COMMON_DIR"})
# Once per bash: pipefail (as the lines had under `bash -c`), no `!` history expansion.
_SHELL_SETUP = "[[ -n ${__coagent_env-} ]] || { set -o pipefail +H; __coagent_env=1; }"
_PROBE_TIMEOUT = 10.0


class AgentAddress:
    """Where and as whom an agent reaches the daemon."""

    def __init__(self, socket: str, agent: str, token: str) -> None:
        self.socket, self.agent, self.token = socket, agent, token

    def env(self) -> dict[str, str]:
        return {"COAGENT_SOCKET": self.socket, "COAGENT_AGENT": self.agent, "COAGENT_TOKEN": self.token}


class DaemonEnvironment:
    """One agent's Environment; used from one thread at a time (the agent's)."""

    def __init__(self, address: AgentAddress, workspace: Path, *,
                 library: ToolLibrary | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = address
        self.workspace = Path(workspace).resolve()
        self.library = library if library is not None else ToolLibrary.for_workspace(self.workspace)
        self.timeout = timeout
        self.finished = False         # the daemon accepted the last finish
        self.waiting = 0.0            # seconds spent waiting for grants
        self.executing = 0.0          # seconds spent running granted command lines
        self.ops = 0
        self.cwd = self.workspace     # the shell's current directory, after the last line
        self._client: Client | None = None
        self._shell: GatedShell | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- Environment

    def bash(self, command: str) -> Observation:
        grant = self._begin(command=command)
        if grant["action"] != "run":
            return _answered(grant)
        started = time.monotonic()
        status, output = self._run_line(command)
        self.executing += time.monotonic() - started
        self._call("end_op", grant["op"], min(max(status, 0), 255), len(output))
        return Observation(output, status, grant["op"])

    def call_tool(self, name: str, params: Mapping[str, Any]) -> Observation:
        self.library.get(name)  # an unknown tool is refused here, with the library's message
        return _answered(self._begin(tool=name, params=dict(params)))

    def tools(self) -> list[ToolSchema]:
        return [ToolSchema.from_spec(s) for s in self.library.tools()]

    @property
    def tools_version(self) -> int:
        return self.library.version

    def take_notices(self) -> list[Notice]:
        return [to_notice(n) for n in self._call("inbox").get("notices") or []]

    def finish(self) -> None:
        self.finished = bool(self._call("finish").get("finished"))
        if self.finished:  # a later resume starts a new shell (in the same directory)
            self._close_shell()

    def retract(self, op_ids: Sequence[int]) -> None:
        if op_ids:  # the wire refuses an empty list
            self._call("retract", self.address.agent, list(op_ids))

    # ---------------------------------------------------------------- plumbing

    def close(self) -> None:
        self._close_shell()
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _begin(self, **what: Any) -> dict[str, Any]:
        self.ops += 1
        self.finished = False
        started = time.monotonic()
        try:
            return self._call("begin_op", cwd=str(self.cwd), **what)
        finally:
            self.waiting += time.monotonic() - started

    def report_usage(self, tokens: int, cost: float) -> None:
        """Tell the daemon, so monitors show tokens and cost during the run."""
        if tokens or cost:
            self._call("usage", tokens, cost)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        client = self._connected()
        result: dict[str, Any] = getattr(client, method)(*args, **kwargs)
        return result

    def _connected(self) -> Client:
        with self._lock:
            if self._client is None:
                # No timeout: a grant may be held until earlier agents finish.
                client = Client(self.address.socket, timeout=None)
                try:
                    client.hello(agent=self.address.agent, token=self.address.token)
                except BaseException:
                    client.close()
                    raise
                self._client = client
            return self._client

    def _run_line(self, command: str) -> tuple[int, str]:
        try:
            shell = self._started_shell()
            result = shell.run(command)
            self._track_cwd(shell, result.exit_status)
        except CoagentError as exc:  # the shell would not (re)start: the line did not run
            return SHELL_LOST, f"coagent: {exc}\n"
        return (TIMED_OUT if result.timed_out else result.exit_status), result.output

    def _started_shell(self) -> GatedShell:
        if self._shell is None:
            start_in = self.cwd if self.cwd.is_dir() else self.workspace
            shell = GatedShell(start_in, _shell_environment(), timeout=self.timeout,
                               max_output=OUTPUT_LIMIT).start()
            shell.run(_SHELL_SETUP, timeout=_PROBE_TIMEOUT)
            self._shell = shell
        return self._shell

    def _track_cwd(self, shell: GatedShell, status: int) -> None:
        """Ask the shell where it is now (also setting it up if it is a new bash); `$?`
        is kept as the line left it. Ungated, so this is no op of the agent's."""
        probe = f'{_SHELL_SETUP}; builtin printf "%s\\n" "$PWD"; (exit {min(max(status, 0), 255)})'
        found: ShellResult = shell.run(probe, timeout=_PROBE_TIMEOUT)
        where = found.output.rstrip("\n")
        if not found.timed_out and os.path.isabs(where) and "\n" not in where:
            self.cwd = Path(where)

    def _close_shell(self) -> None:
        # Not under the lock: close() may come from another thread while a line runs;
        # ending bash is what makes that line return.
        shell, self._shell = self._shell, None
        if shell is not None:
            shell.close()


def _shell_environment() -> dict[str, str]:
    """This process's environment for the agent's shell, without the daemon's address: the
    rc then runs ungated and exports COAGENT_GATED=1, so shims on PATH pass nested
    `bash -c` lines through (this class gates each line)."""
    return {k: v for k, v in os.environ.items() if k not in _SHELL_DROPPED_ENV}


def _answered(grant: Mapping[str, Any]) -> Observation:
    """An op the daemon answered itself: a served read, a tool it ran, or a skip."""
    status = grant.get("exit_status")
    return Observation(grant.get("content") or "", 0 if status is None else int(status), grant.get("op"))


def to_notice(wire: Mapping[str, Any]) -> Notice:
    """A wire notice (a dict as the sync client returns it) as the agents' Notice."""
    return Notice(key=str(wire.get("key", "")), by=str(wire.get("by", "")),
                  kind=wire.get("kind", "stale_read"), detail=str(wire.get("detail") or ""),
                  diff=wire.get("diff"), steps=tuple(wire.get("steps") or ()), id=wire.get("id"))
