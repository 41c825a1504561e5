"""Test support (no tests here): the real WorkspaceExecutor that kills its own daemon
with SIGKILL at a chosen point, for deterministic crash tests.

`COAGENT_EXECUTOR=crash_executor:build` and `COAGENT_TEST_CRASH=POINT:N`, where POINT is
one of `undo-start`, `undo-end`, `redo-start`, `redo-end`, `finish-start`, `finish-end`
and N counts the calls of that method (1 = the first). `-start` dies before the method
does anything; `-end` after it returned (its effect ended and journaled, its completion
not yet fed to the core)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from coagent_cli.executor.workspace import WorkspaceExecutor
from coagent_cli.journal import BlobStore, Journal
from coagent_cli.tools import ToolLibrary

__test__ = False


class CrashingExecutor(WorkspaceExecutor):
    def __init__(self, *args: Any, point: str, nth: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._point, self._nth = point, nth
        self._calls: dict[str, int] = {}

    def _maybe_die(self, method: str, when: str) -> None:
        if self._point == f"{method}-{when}" and self._calls.get(method) == self._nth:
            os.kill(os.getpid(), signal.SIGKILL)

    def _around(self, method: str, call: Any) -> Any:
        self._calls[method] = self._calls.get(method, 0) + 1
        self._maybe_die(method, "start")
        result = call()
        self._maybe_die(method, "end")
        return result

    def undo(self, op_id: int) -> None:
        self._around("undo", lambda: super(CrashingExecutor, self).undo(op_id))

    def redo(self, op_id: int, base_changed: bool) -> Any:
        return self._around("redo", lambda: super(CrashingExecutor, self).redo(op_id, base_changed))

    def finish(self, op_id: int, exit_status: int) -> Any:
        return self._around("finish", lambda: super(CrashingExecutor, self).finish(op_id, exit_status))


def build(workspace: Path, state_dir: Path, *, journal: Journal, blobs: BlobStore) -> CrashingExecutor:
    point, _, nth = os.environ.get("COAGENT_TEST_CRASH", "never:0").partition(":")
    return CrashingExecutor(workspace, state_dir, journal=journal, blobs=blobs,
                            library=ToolLibrary.for_workspace(workspace), point=point, nth=int(nth or 0))
