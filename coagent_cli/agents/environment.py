"""What the agent loop acts on: the Environment protocol, and LocalEnvironment.

The loop only ever talks to an Environment: it runs a bash command line or a declared tool,
lists the declared tools (with a version, so it can refresh what it offers the model), takes
the notices that arrived since it last asked, and says when the agent has finished. The
daemon-backed environment (a gated shell, ops journaled and ordered) implements the same
protocol; LocalEnvironment is the plain one: subprocess bash and `coagent_cli.tools.invoke`
on a real directory, no daemon, no ordering. Tests and single-agent use run on it, and its
`post` lets a test (or an in-process runner) deliver notices.

An environment that can undo ops for good also implements `Retracting` (the daemon-backed
one does; LocalEnvironment cannot, having no journal of what each op changed).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Protocol, Sequence, runtime_checkable

from coagent_cli.tools import ToolLibrary, ToolSpec, invoke
from coagent_cli.tools.execute import DEFAULT_TIMEOUT, run_bash
from coagent_cli.tools.render import workspace_root

NoticeKind = Literal["stale_read", "write_reordered", "write_dropped"]


@dataclass(frozen=True)
class Observation:
    """What one command or tool call gave back."""

    output: str
    exit_status: int = 0
    # The environment's id of the op it ran (notices name the ops that read a stale value).
    op_id: int | None = None


@dataclass(frozen=True)
class ToolSchema:
    """A tool as offered to a model: name, description, JSON schema of its params."""

    name: str
    description: str
    parameters: dict[str, Any]

    @classmethod
    def from_spec(cls, spec: ToolSpec) -> "ToolSchema":
        return cls(spec.name, spec.description.strip(), spec.parameters_schema())

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(frozen=True)
class Notice:
    """An earlier-ranked agent's write changed something this agent relied on."""

    key: str                        # the footprint key, e.g. "file:src/a.py"
    by: str                         # the earlier agent that wrote it
    kind: NoticeKind = "stale_read"
    detail: str = ""                # one human line: what happened
    diff: str | None = None         # the earlier agent's change (text files), unified diff
    steps: tuple[int, ...] = ()     # op ids of this agent's ops that read the old value
    id: int | None = None


class Environment(Protocol):
    def bash(self, command: str) -> Observation: ...

    def call_tool(self, name: str, params: Mapping[str, Any]) -> Observation: ...

    def tools(self) -> list[ToolSchema]:
        """The declared tools (bash is the loop's own and not listed)."""
        ...

    @property
    def tools_version(self) -> int:
        """Changes whenever tools() would answer differently."""
        ...

    def take_notices(self) -> list[Notice]:
        """Notices that arrived since the last call, oldest first; each is given once."""
        ...

    def finish(self) -> None:
        """The agent stopped (it may be resumed later with notices)."""
        ...


@runtime_checkable
class Retracting(Protocol):
    """The optional part of an Environment: undo some of this agent's own ops for good."""

    def retract(self, op_ids: Sequence[int]) -> None:
        """Undo these ops (ids from Observation.op_id); returns once they are undone. Later
        writes of other agents are re-applied on top, and those agents are told."""
        ...


@runtime_checkable
class UsageSink(Protocol):
    """The optional part of an Environment that wants to hear model usage (the daemon's,
    so monitors show tokens and cost while the run goes on)."""

    def report_usage(self, tokens: int, cost: float) -> None:
        """Tokens (prompt + completion) and cost spent since the last report."""
        ...


@dataclass(frozen=True)
class OpRecord:
    """One op LocalEnvironment ran, for tests and reports."""

    op_id: int
    kind: Literal["bash", "tool"]
    text: str                        # the command line, or the tool name
    params: dict[str, Any] = field(default_factory=dict)
    reads: tuple[str, ...] = ()      # declared tools only; bash footprints are unknown here
    writes: tuple[str, ...] = ()
    exit_status: int = 0


class LocalEnvironment:
    """bash and declared tools on a real directory, without a daemon."""

    def __init__(self, workspace: str | Path, *, library: ToolLibrary | None = None,
                 timeout: float = DEFAULT_TIMEOUT, env: Mapping[str, str] | None = None) -> None:
        self.root = workspace_root(workspace)
        self.library = library if library is not None else ToolLibrary.for_workspace(self.root)
        self.timeout = timeout
        self.env = dict(env or {})
        self.ops: list[OpRecord] = []
        self.finished = 0  # how many times the agent finished (resumes finish again)
        self._notices: list[Notice] = []
        self._lock = threading.Lock()

    def bash(self, command: str) -> Observation:
        outcome = run_bash(command, self.root, env=self.env, timeout=self.timeout)
        op = self._record("bash", command, exit_status=outcome.exit_status)
        return Observation(outcome.output, outcome.exit_status, op.op_id)

    def call_tool(self, name: str, params: Mapping[str, Any]) -> Observation:
        result = invoke(self.library.get(name), params, self.root, env=self.env,
                        timeout=self.timeout)
        op = self._record("tool", name, params=dict(result.params), exit_status=result.exit_status,
                          reads=tuple(sorted(map(str, result.reads))),
                          writes=tuple(sorted(map(str, result.writes))))
        return Observation(result.output, result.exit_status, op.op_id)

    def tools(self) -> list[ToolSchema]:
        return [ToolSchema.from_spec(s) for s in self.library.tools()]

    @property
    def tools_version(self) -> int:
        return self.library.version

    def post(self, *notices: Notice) -> None:
        """Deliver notices; the agent sees them at its next step (or when resumed)."""
        with self._lock:
            self._notices.extend(notices)

    def take_notices(self) -> list[Notice]:
        with self._lock:
            taken, self._notices = self._notices, []
        return taken

    def finish(self) -> None:
        self.finished += 1

    def _record(self, kind: Literal["bash", "tool"], text: str, **more: Any) -> OpRecord:
        with self._lock:
            op = OpRecord(len(self.ops) + 1, kind, text, **more)
            self.ops.append(op)
        return op
