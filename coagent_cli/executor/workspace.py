"""The Executor on a real directory: the files counterpart of `sim.env.MemoryEnv`.

Per op it keeps the images that make undo and redo exact:

    before / after   per changed path, FileImages whose bytes are in the BlobStore
    snapshots        for ops that write more than named files (dir:, git:, `*`): shadow
                     git snapshots before and after, so a raw command is undoable too
    base             what the agent had seen of a whole-file write's key (merge base)

How each effect is done:

    prepare   images of the declared file keys (and a snapshot for the rest), journaled
              as an intent before the op runs
    run       the tool (tools.invoke) or `bash -c` with a timeout; then finish
    finish    the writes: every declared file key (all of them when the op succeeded,
              since writing the same bytes still orders the write; only the changed
              ones when it failed), plus the paths a snapshot diff shows, mapped to keys
    undo      checks the live paths still hold the after-images (anything else means
              the core ordered effects wrongly), then restores the before-images, or
              runs the tool's inverse command when it has one
    redo      base unchanged: restore the after-images. Base changed: re-apply the
              meaning: a whole-file write the agent made after seeing the file is a
              three-way merge; a tool re-runs; a command line is re-executed. A failed
              re-apply is reverted: the state is left as it was before the attempt.
    serve     read_file from the stored version; list_dir and search in a scratch copy
              that holds the stored versions. Shell reads are never servable (the core
              then undoes later writes for the duration of the read instead).
    shadow    a whole-file write computed, not applied

What an agent has seen of a file (its merge base) is tracked here: the version its read
ops observed, then the after-images of its own writes to that file. The daemon may pass
`observed_before` to `register` to say it explicitly. A whole-file write to a file the
agent never saw is blind: its redo just writes its bytes again.

Blocking: every method is plain blocking code; the daemon calls them from threads.

The parts are mixins over `state.ExecutorState`: `journaling` (effect intents, op
records), `images` (taking and putting back images), `seen` (merge bases), `running`,
`serving` (reads from stored versions), `rebase` (three-way merge) and `adopt` (taking
up a dead executor's ops). This module holds the public effects.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Mapping

from coagent_cli.core.keys import Key
from coagent_cli.core.model import Change, Digest
from coagent_cli.errors import ExecutionError
from coagent_cli.executor import versions
from coagent_cli.executor.adopt import AdoptMixin
from coagent_cli.executor.footprints import WHOLE_FILE_TOOLS, file_paths, resolve
from coagent_cli.executor.images import ImagesMixin
from coagent_cli.executor.journaling import pre_run_snapshot
from coagent_cli.executor.protocol import Footprint, OpRequest, RedoResult, RunResult
from coagent_cli.executor.rebase import RebaseMixin
from coagent_cli.executor.serving import ServingMixin
from coagent_cli.executor.state import TOOL_TIMEOUT, OpState, new_file_mode
from coagent_cli.journal import BlobStore, FileImage, Journal
from coagent_cli.tools import ToolLibrary
from coagent_cli.tools import execute as tools
from coagent_cli.tools.spec import NONE, SNAPSHOT
from coagent_cli.workspace import Snapshotter

__all__ = ["WorkspaceExecutor", "pre_run_snapshot"]

_REASON_LIMIT = 400


class WorkspaceExecutor(AdoptMixin, RebaseMixin, ServingMixin, ImagesMixin):
    """Performs the core's effects on `workspace`; state (shadow git) under `state_dir`."""

    def __init__(self, workspace: Path, state_dir: Path, *, journal: Journal,
                 blobs: BlobStore, library: ToolLibrary | None) -> None:
        self.workspace = Path(workspace).resolve()
        self.state_dir = Path(state_dir)
        self.journal = journal
        self.blobs = blobs
        self.library = library
        # Rebase a whole-file write made from a stale read onto the version it lands on
        # (MTPO's "re-apply the meaning, not the bytes"). The daemon turns it off for the
        # baselines, so that e.g. `none` really is no control.
        self.rebase_stale_writes = True
        self._ops: dict[int, OpState] = {}
        self._seen: dict[str, dict[Key, Digest]] = {}  # agent -> key -> version it saw
        self._lock = threading.Lock()
        self._snapshotter: Snapshotter | None = None

    # -- requests -----------------------------------------------------------------------

    def footprint(self, request: OpRequest) -> Footprint:
        op = self._ops.get(request.op_id)
        if op is not None and op.request == request:
            return op.footprint
        return resolve(request, self.workspace, self.library).footprint

    def register(self, request: OpRequest, *,
                 observed_before: Mapping[Key, Digest] | None = None) -> Footprint:
        """Keep the request for the effects to come; returns its footprint.

        observed_before: the version of each key the agent had seen before this op (the
        merge base of a whole-file write). Default: what this executor saw it read.
        """
        resolved = resolve(request, self.workspace, self.library)
        with self._lock:
            if request.op_id in self._ops:
                raise ExecutionError(f"op {request.op_id} is already registered")
            seen = self._seen.get(request.agent, {})
            observed = dict(observed_before) if observed_before is not None else {
                k: d for k, d in seen.items() if k in resolved.footprint.writes}
            self._ops[request.op_id] = OpState(request, resolved, observed)
        return resolved.footprint

    def knows(self, op_id: int) -> bool:
        return op_id in self._ops

    def applied(self, op_id: int) -> bool:
        """Whether the op's writes are in the workspace now (as far as this executor did)."""
        return self._op(op_id).applied

    def writes_of(self, op_id: int) -> dict[Key, Change]:
        """The op's writes at its latest application, as the core counts them."""
        return self._writes(self._op(op_id).changes)

    # -- forward ------------------------------------------------------------------------

    def prepare(self, op_id: int) -> None:
        op = self._op(op_id)
        if op.prepared:
            raise ExecutionError(f"op {op_id} is already prepared")
        self._image_before(op)
        if op.footprint.writes:
            op.effect = self._begin(op, "execute", op.before, snapshot=op.snap)
        op.prepared = True

    def run(self, op_id: int, *, timeout: float | None = None) -> RunResult:
        op = self._op(op_id)
        if not op.prepared:
            self.prepare(op_id)
        status, output = self._perform(op, timeout)
        return RunResult(status, output, self.finish(op_id, status))

    def finish(self, op_id: int, exit_status: int) -> dict[Key, Change]:
        op = self._op(op_id)
        if not op.prepared:
            raise ExecutionError(f"finish of op {op_id}, which was never prepared")
        changes = self._observe(op, exit_status)
        if self.rebase_stale_writes:
            changes = self._rebase(op, changes)
        with self.journal.atomic():  # the op's new state and the effect's end, together
            self._settle(op, changes)
            if op.effect is not None:
                self.journal.end_effect(op.effect, f"exit {exit_status}")
                op.effect = None
        self._note_reads(op, {})
        return self._writes(changes)

    def shadow(self, op_id: int) -> dict[Key, Change]:
        """A single whole-file write computed without touching the live file."""
        op = self._op(op_id)
        fp, resolved = op.footprint, op.resolved
        if resolved.tool is None or resolved.tool.name not in WHOLE_FILE_TOOLS or \
                len(fp.writes) != 1 or fp.writes != fp.overwrites:
            raise ExecutionError(f"op {op_id} is not a single whole-file write; cannot shadow")
        (path,) = file_paths(fp.writes)
        live = self.blobs.capture(self._path(path))
        data = str((resolved.params or {}).get("content") or "").encode()
        mode = live.mode if live.kind == "file" and live.mode is not None else new_file_mode()
        after = FileImage("file", digest=self.blobs.put(data), mode=mode)
        op.changes, op.prepared = {path: (live, after)}, True
        self.journal.record("shadowed", {"path": path, "after": after.to_json()},
                            agent=op.request.agent, op_id=op_id)
        self._journal_op(op)
        self._note_writes(op)
        return self._writes(op.changes)

    def content(self, digest: Digest) -> bytes | None:
        return versions.content(self.blobs, digest)

    # -- undo and redo ------------------------------------------------------------------

    def undo(self, op_id: int) -> None:
        op = self._op(op_id)
        if not op.applied:
            raise ExecutionError(f"undo of op {op_id}, which is not applied")
        self._expect_live(op, "after", "undo")
        effect = self._begin(op, "undo", {p: a for p, (_, a) in op.changes.items()})
        if self._has_inverse_command(op):
            assert op.tool_result is not None
            tools.undo(op.tool_result, timeout=TOOL_TIMEOUT)
            # An inverse command restores the meaning, not always the bytes (git's index
            # keeps fresh stat data): what it left is the base a later redo checks against.
            op.changes = {p: (self.blobs.capture(self._path(p)), a)
                          for p, (_, a) in op.changes.items()}
        else:
            self._put_back(op, op.changes, "before")
        op.applied = False
        with self.journal.atomic():
            self._journal_op(op)
            self.journal.end_effect(effect, "undone")

    def redo(self, op_id: int, base_changed: bool) -> RedoResult:
        op = self._op(op_id)
        if op.applied:
            raise ExecutionError(f"redo of op {op_id}, which is applied")
        if base_changed or not op.ever_applied:
            return self._reapply(op)
        self._expect_live(op, "before", "redo (base unchanged)")
        effect = self._begin(op, "redo", {p: b for p, (b, _) in op.changes.items()})
        self._put_back(op, op.changes, "after")
        op.applied = True
        with self.journal.atomic():
            self._journal_op(op)
            self.journal.end_effect(effect, "restored")
        return RedoResult(True, self._writes(op.changes))

    def _reapply(self, op: OpState) -> RedoResult:
        merge_path = self._merge_path(op)
        if merge_path is not None:
            return self._merge_redo(op, merge_path)
        self._image_before(op)
        effect = self._begin(op, "redo", op.before, snapshot=op.snap)
        status, output = self._perform(op, None)
        changes = self._observe(op, status)
        if status != 0:
            self._put_back(op, changes, "before")
            self.journal.end_effect(effect, f"reverted: exit {status}")
            return RedoResult(False, reason=_reason(f"re-run failed (exit {status})", output))
        with self.journal.atomic():
            self._settle(op, changes)
            self.journal.end_effect(effect, "re-run")
        return RedoResult(True, self._writes(changes))

    def _has_inverse_command(self, op: OpState) -> bool:
        result = op.tool_result
        return result is not None and result.ok and result.tool.inverse not in (SNAPSHOT, NONE)


def _reason(head: str, output: str) -> str:
    tail = output.strip()
    return f"{head}: {tail[-_REASON_LIMIT:]}" if tail else head
