"""The contract between the daemon and whatever performs effects on the live state.

The protocol core decides (events in, actions out); an Executor performs the four
effects of `coagent_cli.core.model` on a real workspace and reports digests back.
The daemon calls these methods from worker threads (never on the event loop), and
never calls two of them at once on overlapping keys (the core latches keys).

How an op flows:
  1. The daemon turns a request into an `OpRequest` (a shell command line or a tool
     call), asks `footprint(request)` for the declared reads/writes/..., and feeds
     the core an OpRequested with an OpSpec built from it.
  2. Core says Execute(op): the daemon calls `prepare(op_id)` (before-images or a
     shadow snapshot, journaled), then either
       - runs it itself: `run(op_id)` (tool calls; and built-in agents' shell lines), or
       - lets the agent's own gated shell run the command line, and on end_op
     calls `finish(op_id, exit_status)`, which returns the keys written with
     before/after digests (the core's OpExecuted.writes).
     Execute(shadowed=True): `shadow(op_id)` computes the result without touching
     the live state (only asked for single-key whole-file overwrites).
  3. ServeRead(op, sources): `serve(op_id, sources)` answers a read with the stored
     version (by digest) for each key in sources, the live file otherwise.
  4. Undo(op): `undo(op_id)` restores before-images or runs the tool's inverse.
  5. Redo(op, base_changed): `redo(op_id, base_changed)` restores after-images when
     base_changed is False; otherwise re-applies the op's meaning on the new base:
     re-run the tool; a whole-file write made after reading the file is re-applied
     as a three-way merge (base = what the agent read, ours = what it wrote,
     theirs = the live file, like `git merge-file`); a raw command is re-executed.
     A failed redo leaves the state exactly as before the attempt and returns ok=False.
Every effect is journaled (intent with the images needed to revert it, then outcome)
before it is acknowledged, so `coagent recover` can finish or revert it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from coagent_cli.core.keys import Key
from coagent_cli.core.model import Change, Digest


@dataclass(frozen=True)
class ShellCommand:
    line: str
    cwd: Path


@dataclass(frozen=True)
class ToolCall:
    tool: str
    params: Mapping[str, Any]
    cwd: Path


@dataclass(frozen=True)
class OpRequest:
    op_id: int
    agent: str
    action: ShellCommand | ToolCall


@dataclass(frozen=True)
class Footprint:
    """What the classifier or the tool spec declares for a request."""

    reads: frozenset[Key]
    writes: frozenset[Key]
    observes: frozenset[Key] | None = None
    overwrites: frozenset[Key] = frozenset()
    reversible: bool = True
    servable: bool = False
    kind: str = "raw"  # read | write | tool | irreversible | raw
    reason: str = ""


@dataclass
class RunResult:
    exit_status: int
    output: str = ""
    writes: dict[Key, Change] = field(default_factory=dict)


@dataclass
class RedoResult:
    ok: bool
    writes: dict[Key, Change] = field(default_factory=dict)
    reason: str = ""


class Executor(Protocol):
    def footprint(self, request: OpRequest) -> Footprint: ...

    def prepare(self, op_id: int) -> None: ...

    def run(self, op_id: int, *, timeout: float | None = None) -> RunResult: ...

    def finish(self, op_id: int, exit_status: int) -> dict[Key, Change]: ...

    def shadow(self, op_id: int) -> dict[Key, Change]: ...

    def serve(self, op_id: int, sources: Mapping[Key, Digest]) -> RunResult: ...

    def undo(self, op_id: int) -> None: ...

    def redo(self, op_id: int, base_changed: bool) -> RedoResult: ...

    def content(self, digest: Digest) -> bytes | None:
        """Stored bytes of a version (for diffs in notices); None when absent."""
        ...
