"""Running a declared tool against a real workspace: invoke, undo, redo.

    invoke(tool, params, workspace)  -> ToolResult  (a failing op is a result, not an error)
    undo(result)                     restore the state before it, or raise ExecutionError
    redo(result, workspace)          -> ToolResult  re-run the op's meaning on the current
                                     state; if it no longer applies, leave the state as it
                                     was and raise ExecutionError

Before the forward op runs, before-images of its write keys are captured: every file: key,
and the dir: keys too when the inverse is `snapshot` (dir images can be large, and a tool
with an inverse command does not need them). Then the spec's `capture` commands run, then
the op. Undo of an op whose forward run failed only restores the captured images (the
inverse command presumes the op happened). Commands run in `bash --noprofile --norc` in the
workspace, with git's repository-redirecting variables removed from the environment so the
git tools act on the user's own repository.

Blocking: these are plain blocking calls; async callers run them in a thread.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from coagent_cli.core.keys import Key
from coagent_cli.errors import ExecutionError
from coagent_cli.tools import template as tpl
from coagent_cli.tools.builtin_impl import Outcome, run_builtin
from coagent_cli.tools.images import ImageStore, MemoryImageStore, PathImage, capture, restore
from coagent_cli.tools.render import bind_params, render_footprint, render_forward, workspace_root
from coagent_cli.tools.spec import NONE, SNAPSHOT, ToolSpec

DEFAULT_TIMEOUT = 120.0
OUTPUT_LIMIT = 256 * 1024
_DROPPED_ENV = ("BASH_ENV", "ENV", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE",
                "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE",
                "GIT_COMMON_DIR", "CDPATH")


@dataclass
class ToolResult:
    tool: ToolSpec
    params: dict[str, Any]
    workspace: Path
    reads: frozenset[Key]
    writes: frozenset[Key]
    exit_status: int
    output: str
    command: str | None = None  # the rendered forward command (None for a builtin)
    captures: dict[str, str] = field(default_factory=dict)
    images: list[PathImage] = field(default_factory=list)
    store: ImageStore = field(default_factory=MemoryImageStore, repr=False)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def invoke(tool: ToolSpec, params: Mapping[str, Any], workspace: str | Path, *,
           store: ImageStore | None = None, env: Mapping[str, str] | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> ToolResult:
    root = workspace_root(workspace)
    bound = bind_params(tool, params, root)
    reads, writes = render_footprint(tool, bound, root)
    store = store if store is not None else MemoryImageStore()
    images = [capture(root, k.name, store) for k in sorted(writes) if _imaged(tool, k)]
    captures = {n: _capture(tool, n, t, bound, root, env, timeout) for n, t in tool.capture.items()}
    command = render_forward(tool, bound, captures) if tool.command is not None else None
    if command is not None:
        outcome = run_bash(command, root, env=env, timeout=timeout)
    else:
        assert tool.builtin is not None
        outcome = run_builtin(tool.builtin, root, bound)
    return ToolResult(tool, bound, root, reads, writes, outcome.exit_status, outcome.output,
                      command, captures, images, store)


def _imaged(tool: ToolSpec, key: Key) -> bool:
    return key.scheme == "file" or (key.scheme == "dir" and tool.inverse == SNAPSHOT)


def _capture(tool: ToolSpec, name: str, template: str, params: Mapping[str, Any], root: Path,
             env: Mapping[str, str] | None, timeout: float) -> str:
    outcome = run_bash(tpl.render_command(template, params), root, env=env, timeout=timeout,
                       merge_stderr=False, limit=None)
    if outcome.exit_status != 0:
        raise ExecutionError(f"{tool.name}: capture {name!r} failed "
                             f"(exit {outcome.exit_status}): {outcome.output.strip()}")
    return outcome.output.rstrip("\n")


def undo(result: ToolResult, *, env: Mapping[str, str] | None = None,
         timeout: float = DEFAULT_TIMEOUT) -> None:
    tool = result.tool
    if not result.ok or tool.inverse == SNAPSHOT:
        for image in reversed(result.images):
            restore(result.workspace, image, result.store)
        return
    if tool.inverse == NONE:
        raise ExecutionError(f"{tool.name} is irreversible; it cannot be undone")
    command = tpl.render_command(tool.inverse, {**result.params, **result.captures})
    outcome = run_bash(command, result.workspace, env=env, timeout=timeout)
    if outcome.exit_status != 0:
        raise ExecutionError(f"undo of {tool.name} failed (exit {outcome.exit_status}): "
                             f"{outcome.output.strip()}")


def redo(result: ToolResult, workspace: str | Path | None = None, *,
         env: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT) -> ToolResult:
    tool = result.tool
    if tool.redo == NONE:
        raise ExecutionError(f"{tool.name} cannot be redone (redo: none)")
    where = workspace if workspace is not None else result.workspace
    again = invoke(tool, result.params, where, store=result.store, env=env, timeout=timeout)
    if not again.ok:
        undo(again)
        raise ExecutionError(f"redo of {tool.name} no longer applies: {again.output.strip()}")
    return again


def run_bash(command: str, cwd: Path, *, env: Mapping[str, str] | None = None,
             timeout: float = DEFAULT_TIMEOUT, merge_stderr: bool = True,
             limit: int | None = OUTPUT_LIMIT) -> Outcome:
    try:
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", "set -o pipefail\n" + command],
            cwd=cwd, env=_environment(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ExecutionError(f"command timed out after {timeout:g}s: {command}") from None
    except OSError as e:
        raise ExecutionError(f"could not run bash: {e}") from e
    text = done.stdout[:limit].decode("utf-8", "surrogateescape")
    if limit is not None and len(done.stdout) > limit:
        text += f"\n[output truncated at {limit} bytes]"
    if not merge_stderr and done.returncode != 0:
        text += done.stderr.decode("utf-8", "replace")
    return Outcome(done.returncode, text)


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "PAGER": "cat"})
    env.update(extra or {})
    return env
