"""DaemonEnvironment: the agents' Environment over the daemon's socket.

Each bash command line is one op: `begin_op(command, cwd)`; on `run` the line runs here
(`bash -c` in the workspace) and `end_op(exit status)` reports it; on `served` or `skip`
the daemon's answer stands in for the run. A declared tool call is performed by the
daemon itself (`begin_op(tool=...)` answered `served` with the output). Notices come
from the agent's inbox; finishing is `finish`; `retract` undoes some of the agent's own
ops for good (the daemon re-applies later writes of others on top and tells them). A refused op reaches the agent loop as a
CoagentError, which the loop shows the model as an error observation.

The environment also keeps what a report needs: how long the agent waited for grants
(waiting) and ran commands (executing); the rest of its time is thinking.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from coagent_cli.agents.environment import Notice, Observation, ToolSchema
from coagent_cli.daemon.client import Client
from coagent_cli.errors import ExecutionError
from coagent_cli.tools import ToolLibrary
from coagent_cli.tools.execute import DEFAULT_TIMEOUT, run_bash

__all__ = ["DaemonEnvironment", "AgentAddress", "to_notice", "TIMED_OUT"]

TIMED_OUT = 124  # exit status reported for a command line killed by its timeout (as timeout(1))


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
        self._client: Client | None = None
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

    def retract(self, op_ids: Sequence[int]) -> None:
        if op_ids:  # the wire refuses an empty list
            self._call("retract", self.address.agent, list(op_ids))

    # ---------------------------------------------------------------- plumbing

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _begin(self, **what: Any) -> dict[str, Any]:
        self.ops += 1
        self.finished = False
        started = time.monotonic()
        try:
            return self._call("begin_op", cwd=str(self.workspace), **what)
        finally:
            self.waiting += time.monotonic() - started

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
        # COAGENT_GATED: this line is gated already; shims on PATH must not gate it again.
        try:
            outcome = run_bash(command, self.workspace, env={"COAGENT_GATED": "1"}, timeout=self.timeout)
        except ExecutionError as exc:
            return TIMED_OUT, f"coagent: {exc}\n"
        return outcome.exit_status, outcome.output


def _answered(grant: Mapping[str, Any]) -> Observation:
    """An op the daemon answered itself: a served read, a tool it ran, or a skip."""
    status = grant.get("exit_status")
    return Observation(grant.get("content") or "", 0 if status is None else int(status), grant.get("op"))


def to_notice(wire: Mapping[str, Any]) -> Notice:
    """A wire notice (a dict as the sync client returns it) as the agents' Notice."""
    return Notice(key=str(wire.get("key", "")), by=str(wire.get("by", "")),
                  kind=wire.get("kind", "stale_read"), detail=str(wire.get("detail") or ""),
                  diff=wire.get("diff"), steps=tuple(wire.get("steps") or ()), id=wire.get("id"))
