"""The before- and after-images of an op: taking them, diffing, putting them back.

Declared file keys are imaged directly; for ops that write more (dir:, git:, `*`) a
shadow git snapshot before and after the run shows the rest.
"""

from __future__ import annotations

from coagent_cli.core.keys import Key
from coagent_cli.errors import ExecutionError
from coagent_cli.executor import versions
from coagent_cli.executor.footprints import file_paths, needs_snapshot
from coagent_cli.executor.protocol import Footprint
from coagent_cli.executor.state import Changes, ExecutorState, OpState, Side
from coagent_cli.journal import FileImage
from coagent_cli.workspace import workspace_key


class ImagesMixin(ExecutorState):
    def _image_before(self, op: OpState) -> None:
        writes = op.footprint.writes
        op.before = {p: self.blobs.capture(self._path(p)) for p in file_paths(writes)}
        op.snap = self._snapshots().snapshot() if needs_snapshot(writes) else None
        op.snap_after = None

    def _observe(self, op: OpState, exit_status: int) -> Changes:
        """What the latest run changed (see `workspace` for which keys count)."""
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

    def _put_back(self, op: OpState, changes: Changes, side: Side) -> None:
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

    def _expect_live(self, op: OpState, side: Side, what: str) -> None:
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


def _declared(fp: Footprint, key: Key) -> bool:
    return any(w.covers(key) for w in fp.writes)
