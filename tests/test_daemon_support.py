"""Test support for the daemon tests (no tests here): a small file-only Executor.

`SnapshotExecutor` is a stand-in for the real WorkspaceExecutor, good enough to drive
the daemon end to end on real files: footprints come from the shell classifier; every
shell op is bracketed by shadow-git snapshots, whose differences are its writes; undo
and redo restore before/after images; a redo on a changed base re-runs the line.
Effects are journaled with their before-images, so `coagent recover` can revert them.
Build it by name with `COAGENT_EXECUTOR=test_daemon_support:SnapshotExecutor`.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Mapping

from coagent_cli.core.keys import ALL, Key
from coagent_cli.core.model import ABSENT, Change, Digest
from coagent_cli.errors import ExecutionError
from coagent_cli.executor.protocol import (
    Footprint,
    OpRequest,
    RedoResult,
    RunResult,
    ShellCommand,
)
from coagent_cli.journal import BlobStore, FileImage, Journal
from coagent_cli.shell.classifier import classify
from coagent_cli.workspace import Snapshotter, workspace_key

__test__ = False


def digest_of(image: FileImage) -> Digest:
    if image.kind == "absent":
        return ABSENT
    if image.kind == "symlink":
        return f"link:{image.target}"
    assert image.digest is not None
    return image.digest


class SnapshotExecutor:
    def __init__(self, workspace: Path, state_dir: Path, *, journal: Journal, blobs: BlobStore,
                 library: object = None) -> None:
        self.workspace = Path(workspace).resolve()
        self.journal = journal
        self.blobs = blobs
        self.snaps = Snapshotter(self.workspace, state_dir, blobs)
        self.requests: dict[int, OpRequest] = {}
        self.before: dict[int, dict[str, FileImage]] = {}
        self.after: dict[int, dict[str, FileImage]] = {}
        self._started: dict[int, tuple[object, int]] = {}
        self._lock = threading.Lock()

    def footprint(self, request: OpRequest) -> Footprint:
        action = request.action
        if not isinstance(action, ShellCommand):
            raise ExecutionError("the test executor runs shell lines only", code="unsupported")
        self.requests[request.op_id] = request
        c = classify(action.line, cwd=action.cwd, workspace=self.workspace)
        if c.kind in ("raw", "irreversible", "tool"):
            return Footprint(frozenset({ALL}), frozenset({ALL}), kind="raw")
        return Footprint(c.reads, c.writes, kind=c.kind)

    def prepare(self, op_id: int) -> None:
        snap = self.snaps.snapshot()
        effect = self.journal.begin_effect(op_id, "execute", {})
        self._started[op_id] = (snap, effect)

    def finish(self, op_id: int, exit_status: int) -> dict[Key, Change]:
        snap, effect = self._started.pop(op_id)
        changes = self.snaps.changes(snap, self.snaps.snapshot())  # type: ignore[arg-type]
        self.before[op_id] = {c.path: c.before for c in changes}
        self.after[op_id] = {c.path: c.after for c in changes}
        self.journal.end_effect(effect, f"exit {exit_status}")
        return {c.key: Change(digest_of(c.before), digest_of(c.after)) for c in changes}

    def run(self, op_id: int, *, timeout: float | None = None) -> RunResult:
        self.prepare(op_id)
        line = self.requests[op_id].action
        assert isinstance(line, ShellCommand)
        done = subprocess.run(["bash", "-c", line.line], cwd=line.cwd, capture_output=True, timeout=30)
        writes = self.finish(op_id, done.returncode)
        return RunResult(done.returncode, done.stdout.decode(errors="replace"), writes)

    def shadow(self, op_id: int) -> dict[Key, Change]:
        raise ExecutionError("no shadowed execution in the test executor")

    def serve(self, op_id: int, sources: Mapping[Key, Digest]) -> RunResult:
        raise ExecutionError("no served reads in the test executor")

    def undo(self, op_id: int) -> None:
        self._put(op_id, "undo", self.before[op_id])

    def redo(self, op_id: int, base_changed: bool) -> RedoResult:
        if not base_changed:
            had = self._put(op_id, "redo", self.after[op_id])
            return RedoResult(True, {workspace_key(p): Change(digest_of(had[p]), digest_of(i))
                                     for p, i in self.after[op_id].items()})
        result = self.run(op_id)
        if result.exit_status != 0:
            self._put(op_id, "redo-revert", self.before[op_id])
            return RedoResult(False, reason=f"re-run exited {result.exit_status}")
        return RedoResult(True, result.writes)

    def content(self, digest: Digest) -> bytes | None:
        if len(digest) != 64:
            return None
        return self.blobs.get(digest)

    def _put(self, op_id: int, action: str, images: dict[str, FileImage]) -> dict[str, FileImage]:
        current = {p: self.blobs.capture(self.workspace / p) for p in images}
        effect = self.journal.begin_effect(op_id, action, current)
        self.snaps.apply(images)
        self.journal.end_effect(effect, "done")
        return current
