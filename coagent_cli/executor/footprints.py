"""What a request declares: the tool spec's footprint, or the classifier's for a shell line.

A shell line that is exactly a declared tool's `match` pattern becomes that tool (`Resolved`
carries the spec and bound params), so it is run, undone and redone as the tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coagent_cli.core.keys import ALL, Key
from coagent_cli.errors import OutsideWorkspace, UsageError
from coagent_cli.executor.protocol import Footprint, OpRequest, ShellCommand, ToolCall
from coagent_cli.shell.classifier import classify
from coagent_cli.tools import ToolLibrary, ToolMatcher, ToolSpec
from coagent_cli.tools.render import bind_params, render_footprint

# Tools whose file: writes do not depend on the old value (the given bytes replace it).
WHOLE_FILE_TOOLS = frozenset({"write_file", "create_file"})
# Pure reads the executor can answer from stored versions (see WorkspaceExecutor.serve).
SERVABLE_TOOLS = frozenset({"read_file", "list_dir", "search"})


@dataclass(frozen=True)
class Resolved:
    footprint: Footprint
    tool: ToolSpec | None = None
    params: dict[str, Any] | None = None
    # Files written whole, bytes independent of the old ones (write_file, `> f`): a redo
    # after the agent had seen the file is a three-way merge rather than a re-run. Not
    # the core's `overwrites`, which also promises the write can be computed offline.
    whole: frozenset[Key] = frozenset()


def resolve(request: OpRequest, workspace: Path, library: ToolLibrary | None) -> Resolved:
    action = request.action
    if isinstance(action, ToolCall):
        return _tool(_spec(library, action.tool), action.params, workspace)
    return _shell(action, workspace, library)


def _spec(library: ToolLibrary | None, name: str) -> ToolSpec:
    if library is None:
        raise UsageError(f"no tool library: cannot run tool {name!r}", code="unknown_tool")
    return library.get(name)


def _tool(spec: ToolSpec, params: Any, workspace: Path) -> Resolved:
    bound = bind_params(spec, dict(params), workspace)
    reads, writes = render_footprint(spec, bound, workspace)
    whole = spec.name in WHOLE_FILE_TOOLS
    fp = Footprint(
        reads=reads, writes=writes,
        overwrites=frozenset(k for k in writes if k.scheme == "file") if whole else frozenset(),
        reversible=not spec.is_irreversible,
        servable=spec.name in SERVABLE_TOOLS and not writes,
        kind="tool", reason=f"declared tool {spec.name}",
    )  # fmt: skip
    return Resolved(fp, spec, bound, whole=fp.overwrites)


def _shell(action: ShellCommand, workspace: Path, library: ToolLibrary | None) -> Resolved:
    matchers = [ToolMatcher(library)] if library is not None else []
    found = classify(action.line, cwd=action.cwd, workspace=workspace, tools=matchers)
    if found.kind == "tool" and found.tool is not None and library is not None:
        return _tool(library.get(found.tool), found.params or {}, workspace)
    if found.outside_writes:
        where = ", ".join(found.outside_writes)
        raise OutsideWorkspace(f"the command writes outside the workspace ({where}); "
                               "coagent can neither latch nor undo that, so it is refused")
    everything = frozenset({ALL})
    if found.kind == "read":
        return Resolved(Footprint(found.reads, frozenset(), kind="read", reason=found.reason))
    if found.kind == "write":
        return Resolved(Footprint(found.reads, found.writes, kind="write", reason=found.reason),
                        whole=found.overwrites)
    return Resolved(Footprint(everything, everything, reversible=found.kind != "irreversible",
                              kind=found.kind, reason=found.reason))


def file_paths(keys: frozenset[Key]) -> list[str]:
    return sorted(k.name for k in keys if k.scheme == "file")


def needs_snapshot(keys: frozenset[Key]) -> bool:
    """Written keys that name no single file (dir:, git:, *) are imaged by a snapshot."""
    return any(k.scheme != "file" for k in keys)
