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
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Mapping

from coagent_cli.core.keys import Key
from coagent_cli.core.model import Change, Digest
from coagent_cli.errors import CoagentError, ExecutionError
from coagent_cli.executor import versions
from coagent_cli.executor.footprints import (
    WHOLE_FILE_TOOLS,
    Resolved,
    file_paths,
    needs_snapshot,
    resolve,
)
from coagent_cli.executor import persist
from coagent_cli.executor.merge import merge3
from coagent_cli.executor.process import run_line, start_time
from coagent_cli.executor.protocol import (
    Footprint,
    OpRequest,
    RedoResult,
    RunResult,
    ShellCommand,
    ToolCall,
)
from coagent_cli.journal import BlobStore, FileImage, Journal, OpRecord
from coagent_cli.tools import ToolLibrary, ToolResult
from coagent_cli.tools import execute as tools
from coagent_cli.tools import render
from coagent_cli.tools.spec import NONE, SNAPSHOT
from coagent_cli.workspace import Snapshot, Snapshotter, workspace_key
from coagent_cli.workspace import paths as ws_paths

Side = Literal["before", "after"]
Changes = dict[str, tuple[FileImage, FileImage]]  # path -> (before, after)
_TOOL_TIMEOUT = 120.0
_REASON_LIMIT = 400


@dataclass
class _Op:
    request: OpRequest
    resolved: Resolved
    observed: dict[Key, Digest]  # what the agent had seen of keys it now writes
    before: dict[str, FileImage] = field(default_factory=dict)  # declared files, pre-run
    snap: Snapshot | None = None  # snapshot before the latest run
    snap_after: Snapshot | None = None
    effect: int | None = None
    changes: Changes = field(default_factory=dict)  # of the latest application
    tool_result: ToolResult | None = None
    noted: dict[Key, Digest] = field(default_factory=dict)  # what it showed its agent
    prepared: bool = False
    applied: bool = False
    ever_applied: bool = False

    @property
    def op_id(self) -> int:
        return self.request.op_id

    @property
    def footprint(self) -> Footprint:
        return self.resolved.footprint


class WorkspaceExecutor:
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
        self._ops: dict[int, _Op] = {}
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
            self._ops[request.op_id] = _Op(request, resolved, observed)
        return resolved.footprint

    def adopt(self, records: Iterable[OpRecord]) -> list[str]:
        """After a restart: take up the ops a dead executor journaled (their `detail`),
        so that undoing and redoing them works here as it did there, and rebuild what
        each agent had seen. Returns one line per op it could not take up."""
        problems = []
        for rec in sorted(records, key=lambda r: r.op_id):
            if not rec.detail.get("request"):
                continue  # journaled before details were: nothing to take up
            try:
                op = self._adopted(rec)
            except CoagentError as exc:
                problems.append(f"op {rec.op_id} ({rec.label}): {exc.message}")
                continue
            with self._lock:
                self._ops[op.op_id] = op
                self._seen.setdefault(op.request.agent, {}).update(op.noted)
            self._note_writes(op)
        return problems

    def _adopted(self, rec: OpRecord) -> _Op:
        d = rec.detail
        request = persist.request_from_json(rec.op_id, rec.agent, d["request"])
        resolved = resolve(request, self.workspace, self.library)
        op = _Op(request, resolved, persist.digests_from_json(d.get("observed")))
        op.changes = {p: (rec.before[p], rec.after[p]) for p in rec.after if p in rec.before}
        declared = set(file_paths(resolved.footprint.writes))
        op.before = {p: pair[0] for p, pair in op.changes.items() if p in declared}
        op.noted = persist.digests_from_json(d.get("noted"))
        op.snap = persist.snapshot_from_json(d.get("snap"))
        op.snap_after = persist.snapshot_from_json(d.get("snap_after"))
        op.prepared, op.applied = bool(d.get("prepared")), bool(d.get("applied"))
        op.ever_applied = bool(d.get("ever_applied"))
        ran = d.get("tool")
        if ran is not None and resolved.tool is not None:
            root = render.workspace_root(self.workspace)
            bound = render.bind_params(resolved.tool, resolved.params or {}, root)
            op.tool_result = ToolResult(resolved.tool, bound, root, resolved.footprint.reads,
                                        resolved.footprint.writes, int(ran["exit_status"]), "",
                                        ran.get("command"), dict(ran.get("captures") or {}))
        return op

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
        mode = live.mode if live.kind == "file" and live.mode is not None else _new_file_mode()
        after = FileImage("file", digest=self.blobs.put(data), mode=mode)
        op.changes, op.prepared = {path: (live, after)}, True
        self.journal.record("shadowed", {"path": path, "after": after.to_json()},
                            agent=op.request.agent, op_id=op_id)
        self._journal_op(op)
        self._note_writes(op)
        return self._writes(op.changes)

    # -- reads --------------------------------------------------------------------------

    def serve(self, op_id: int, sources: Mapping[Key, Digest]) -> RunResult:
        """Run a read with each key in `sources` replaced by that stored version."""
        op = self._op(op_id)
        if not sources:
            status, output = self._perform(op, None)
        elif not op.footprint.servable or op.resolved.tool is None:
            raise ExecutionError(f"op {op_id} is not a servable read; it cannot be served "
                                 "from stored versions")
        elif op.resolved.tool.name == "read_file":
            status, output = self._serve_file(op, sources)
        else:
            status, output = self._serve_in_scratch(op, sources)
        op.prepared = True
        self._note_reads(op, sources)
        return RunResult(status, output)

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
            tools.undo(op.tool_result, timeout=_TOOL_TIMEOUT)
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

    def _reapply(self, op: _Op) -> RedoResult:
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

    # -- three-way merge of a whole-file write ------------------------------------------

    def _rebase(self, op: _Op, changes: Changes) -> Changes:
        """A whole-file write computed from an older version than the one it landed on
        (an earlier agent changed the file after this agent read it) carries the agent's
        edit, not its bytes: put the edit on the new base by three-way merge, as a redo
        does. On a conflict its bytes stay; the agent is told of the change anyway."""
        for path, (before, after) in list(changes.items()):
            key = workspace_key(path)
            seen = op.observed.get(key)
            if key not in op.resolved.whole or seen is None or after.kind != "file":
                continue
            landed_on = versions.image_digest(self.blobs, before)
            if landed_on == seen:
                continue
            ours = versions.content(self.blobs, versions.image_digest(self.blobs, after)) or b""
            merged = merge3(versions.content(self.blobs, seen) or b"", ours,
                            versions.content(self.blobs, landed_on) or b"")
            if merged is None or merged == ours:
                continue
            rebased = FileImage("file", digest=self.blobs.put(merged), mode=after.mode)
            self.blobs.restore(self._path(path), rebased)
            changes[path] = (before, rebased)
        return changes

    def _merge_path(self, op: _Op) -> str | None:
        """The file to merge, for a whole-file write made after the agent saw the file."""
        if len(op.changes) != 1:
            return None
        (path,) = op.changes
        key = workspace_key(path)
        return path if key in op.resolved.whole and key in op.observed else None

    def _merge_redo(self, op: _Op, path: str) -> RedoResult:
        base = versions.content(self.blobs, op.observed[workspace_key(path)]) or b""
        ours_image = op.changes[path][1]
        ours = versions.content(self.blobs, versions.image_digest(self.blobs, ours_image)) or b""
        live = self.blobs.capture(self._path(path))
        theirs = versions.content(self.blobs, versions.image_digest(self.blobs, live)) or b""
        merged = merge3(base, ours, theirs)
        if merged is None:
            return RedoResult(False, reason=f"{path}: the write conflicts with the new base "
                              "(three-way merge failed); it was not re-applied")
        mode = live.mode if live.kind == "file" else ours_image.mode
        after = FileImage("file", digest=self.blobs.put(merged), mode=mode or _new_file_mode())
        effect = self._begin(op, "redo", {path: live})
        self.blobs.restore(self._path(path), after)
        with self.journal.atomic():
            self._settle(op, {path: (live, after)})
            self.journal.end_effect(effect, "merged")
        return RedoResult(True, self._writes(op.changes))

    # -- running ------------------------------------------------------------------------

    def _perform(self, op: _Op, timeout: float | None) -> tuple[int, str]:
        resolved, action = op.resolved, op.request.action
        if resolved.tool is not None:
            try:
                result = tools.invoke(resolved.tool, resolved.params or {}, self.workspace,
                                      store=self.blobs, timeout=timeout or _TOOL_TIMEOUT)
            except ExecutionError as exc:  # a capture failed or the command timed out
                op.tool_result = None
                return 1, str(exc)
            op.tool_result = result
            return result.exit_status, result.output
        assert isinstance(action, ShellCommand)
        done = run_line(action.line, Path(action.cwd), timeout=timeout,
                        on_start=lambda pgid: self._journal_process(op, pgid))
        return done.exit_status, done.output

    def _journal_process(self, op: _Op, pgid: int) -> None:
        """Name the command's process group in the journal before it can write much:
        if this process dies, `coagent recover` kills the group before reverting."""
        self.journal.record("process", {"pgid": pgid, "started": start_time(pgid)},
                            agent=op.request.agent, op_id=op.request.op_id)

    # -- images -------------------------------------------------------------------------

    def _image_before(self, op: _Op) -> None:
        writes = op.footprint.writes
        op.before = {p: self.blobs.capture(self._path(p)) for p in file_paths(writes)}
        op.snap = self._snapshots().snapshot() if needs_snapshot(writes) else None
        op.snap_after = None

    def _observe(self, op: _Op, exit_status: int) -> Changes:
        """What the latest run changed (see the module docstring for which keys count)."""
        found: Changes = {}
        for path, before in op.before.items():
            after = self.blobs.capture(self._path(path))
            if exit_status == 0 or not versions.same(before, after):
                found[path] = (before, after)
        if op.snap is not None:
            snaps = self._snapshots()
            op.snap_after = snaps.snapshot()
            for change in snaps.changes(op.snap, op.snap_after):
                if change.path not in found and _declared(op.footprint, change.key):
                    found[change.path] = (change.before, change.after)
        return found

    def _put_back(self, op: _Op, changes: Changes, side: Side) -> None:
        """Make each changed path hold its before- (or after-) image again."""
        snap = op.snap if side == "before" else op.snap_after
        direct = {p for p in changes if p in op.before}
        imaged = sorted(p for p in changes if p not in direct)
        if imaged and snap is not None:
            self._snapshots().restore(imaged, snap)  # removes directories it emptied, too
        elif imaged:
            direct.update(imaged)
        pick = 0 if side == "before" else 1
        if direct:
            self._apply_images({p: changes[p][pick] for p in sorted(direct)})

    def _apply_images(self, images: dict[str, FileImage]) -> None:
        for path in sorted(images, key=lambda p: (images[p].kind != "absent", p)):
            self.blobs.restore(self._path(path), images[path])

    def _expect_live(self, op: _Op, side: Side, what: str) -> None:
        """Raise unless the live paths hold the op's images. Paths below `.git/` are not
        compared: git rewrites its index (stat cache) even on reads such as `git status`."""
        pick = 0 if side == "before" else 1
        for path, pair in sorted(op.changes.items()):
            if workspace_key(path).scheme == "git":
                continue
            live = self.blobs.capture(self._path(path))
            if not versions.same(live, pair[pick]):
                raise ExecutionError(
                    f"{what} of op {op.op_id}: {path} is not its {side}-image "
                    "(effects on it were performed out of order)")

    def _settle(self, op: _Op, changes: Changes) -> None:
        journaled = op.ever_applied
        op.changes = changes
        op.applied = bool(changes)
        op.ever_applied = op.ever_applied or op.applied
        if changes or journaled:
            self._journal_op(op)
        self._note_writes(op)

    def _writes(self, changes: Changes) -> dict[Key, Change]:
        groups: dict[Key, dict[str, tuple[FileImage, FileImage]]] = {}
        for path, pair in changes.items():
            groups.setdefault(workspace_key(path), {})[path] = pair
        out: dict[Key, Change] = {}
        for key, pairs in groups.items():
            if len(pairs) == 1 and key.is_concrete:
                ((before, after),) = pairs.values()
                out[key] = Change(versions.image_digest(self.blobs, before),
                                  versions.image_digest(self.blobs, after))
            else:
                out[key] = Change(
                    versions.group_digest(self.blobs, {p: b for p, (b, _) in pairs.items()}),
                    versions.group_digest(self.blobs, {p: a for p, (_, a) in pairs.items()}))
        return out

    # -- serving reads ------------------------------------------------------------------

    def _serve_file(self, op: _Op, sources: Mapping[Key, Digest]) -> tuple[int, str]:
        (path,) = file_paths(op.footprint.reads)
        digest = sources.get(workspace_key(path))
        if digest is None:
            return self._perform(op, None)
        data = versions.content(self.blobs, digest)
        if data is None:
            return 1, f"cat: {path}: No such file or directory\n"
        return 0, data.decode("utf-8", "replace")

    def _serve_in_scratch(self, op: _Op, sources: Mapping[Key, Digest]) -> tuple[int, str]:
        """Run the read in a copy of the directories it reads, holding the stored versions."""
        assert op.resolved.tool is not None
        with tempfile.TemporaryDirectory(prefix="coagent-serve-") as scratch:
            root = Path(scratch)
            for key in op.footprint.reads:
                if key.scheme == "dir":
                    _copy_tree(self.workspace, root, key.name)
            for key, digest in sources.items():
                if key.scheme == "file":
                    image = versions.image_of(self.blobs, digest)
                    if image is not None:
                        self.blobs.restore(root / key.name, image)
            try:
                done = tools.invoke(op.resolved.tool, op.resolved.params or {}, root,
                                    timeout=_TOOL_TIMEOUT)
            except ExecutionError as exc:
                return 1, str(exc)
            return done.exit_status, done.output

    # -- what each agent has seen -------------------------------------------------------

    def _note_reads(self, op: _Op, served: Mapping[Key, Digest]) -> None:
        fp = op.footprint
        if fp.writes:
            return
        seen_keys = fp.observes if fp.observes is not None else fp.reads
        found: dict[Key, Digest] = {}
        for path in file_paths(frozenset(seen_keys)):
            key = workspace_key(path)
            found[key] = served.get(key) or versions.image_digest(
                self.blobs, self.blobs.capture(self._path(path)))
        with self._lock:
            self._seen.setdefault(op.request.agent, {}).update(found)
        if found and found != op.noted:  # a restarted daemon rebuilds the merge bases from it
            op.noted = found
            self._journal_op(op)

    def _note_writes(self, op: _Op) -> None:
        """An agent knows what it wrote to a file it had seen, or wrote whole."""
        writes = self._writes(op.changes)
        with self._lock:
            seen = self._seen.setdefault(op.request.agent, {})
            for key, change in writes.items():
                if key.scheme == "file" and (key in op.resolved.whole or key in seen):
                    seen[key] = change.after

    # -- journal ------------------------------------------------------------------------

    def _begin(self, op: _Op, action: str, images: Mapping[str, FileImage], *,
               snapshot: Snapshot | None = None) -> int:
        """Journal the intent. A raw command's before-images are only known after it ran,
        so its pre-run snapshot is journaled with the intent, in the same transaction: a
        `snapshot` event naming the effect, with the keys the op may write. `coagent
        recover` reverts an effect cut off mid-run from it (daemon.run.recover)."""
        with self.journal.atomic():
            effect = self.journal.begin_effect(op.op_id, action, images)
            if snapshot is not None:
                self.journal.record("snapshot", pre_run_snapshot(effect, snapshot, op.footprint),
                                    agent=op.request.agent, op_id=op.op_id)
            return effect

    def _journal_op(self, op: _Op) -> None:
        """Record the op's images; the daemon's own fields (rank, state) are kept."""
        old = self.journal.op(op.op_id)
        fp = op.footprint
        self.journal.upsert_op(OpRecord(
            op_id=op.op_id, agent=op.request.agent, rank=old.rank if old else -1,
            label=old.label if old else _label(op.request),
            state=old.state if old else ("applied" if op.applied else "done"),
            reads=tuple(sorted(map(str, fp.reads))), writes=tuple(sorted(map(str, fp.writes))),
            before={p: b for p, (b, _) in op.changes.items()},
            after={p: a for p, (_, a) in op.changes.items()},
            detail=_detail(op),
        ))  # fmt: skip

    # -- helpers ------------------------------------------------------------------------

    def _op(self, op_id: int) -> _Op:
        try:
            return self._ops[op_id]
        except KeyError:
            raise ExecutionError(f"op {op_id} was never registered with the executor") from None

    def _path(self, rel: str) -> Path:
        return ws_paths.checked(self.workspace, rel)

    def _snapshots(self) -> Snapshotter:
        with self._lock:
            if self._snapshotter is None:
                self._snapshotter = Snapshotter(self.workspace, self.state_dir, self.blobs)
            return self._snapshotter

    def _has_inverse_command(self, op: _Op) -> bool:
        result = op.tool_result
        return result is not None and result.ok and result.tool.inverse not in (SNAPSHOT, NONE)


def _detail(op: _Op) -> dict[str, object]:
    """What a restarted executor needs to take the op up again (see `persist`)."""
    result = op.tool_result
    return {
        "request": persist.request_to_json(op.request),
        "observed": persist.digests_to_json(op.observed),
        "noted": persist.digests_to_json(op.noted),
        "applied": op.applied, "ever_applied": op.ever_applied, "prepared": op.prepared,
        "snap": persist.snapshot_to_json(op.snap), "snap_after": persist.snapshot_to_json(op.snap_after),
        "tool": None if result is None else {"exit_status": result.exit_status, "command": result.command,
                                             "captures": dict(result.captures)},
    }  # fmt: skip


def pre_run_snapshot(effect: int, snapshot: Snapshot, fp: Footprint) -> dict[str, object]:
    """The payload of a `snapshot` event: what recover needs to revert `effect`."""
    return {"effect": effect, "tree": snapshot.tree, "gitdir": snapshot.gitdir,
            "opaque": list(snapshot.opaque), "writes": sorted(map(str, fp.writes))}


def _declared(fp: Footprint, key: Key) -> bool:
    return any(w.covers(key) for w in fp.writes)


def _label(request: OpRequest) -> str:
    action = request.action
    if isinstance(action, ToolCall):
        return f"{action.tool} {json.dumps(dict(action.params), sort_keys=True, default=str)}"
    return action.line


def _reason(head: str, output: str) -> str:
    tail = output.strip()
    return f"{head}: {tail[-_REASON_LIMIT:]}" if tail else head


def _copy_tree(src_root: Path, dst_root: Path, rel: str) -> None:
    src = src_root / rel if rel else src_root
    if not src.is_dir():
        return
    ignore = shutil.ignore_patterns(".git", ws_paths.STATE_DIR_NAME)
    shutil.copytree(src, dst_root / rel if rel else dst_root, symlinks=True, ignore=ignore,
                    dirs_exist_ok=True)


def _new_file_mode() -> int:
    """The mode a newly written file gets under this process's umask."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644

