"""Three-way merge of a whole-file write: on a stale first run, and on a redo.

A whole-file write the agent made after seeing the file carries the agent's edit, not
its bytes: when the file changed since, the edit is put on the new version by merge3.
"""

from __future__ import annotations

from coagent_cli.executor import versions
from coagent_cli.executor.merge import merge3
from coagent_cli.executor.protocol import RedoResult
from coagent_cli.executor.seen import SeenMixin
from coagent_cli.executor.state import Changes, OpState, new_file_mode
from coagent_cli.journal import FileImage
from coagent_cli.workspace import workspace_key


class RebaseMixin(SeenMixin):
    def _rebase(self, op: OpState, changes: Changes) -> Changes:
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

    def _merge_path(self, op: OpState) -> str | None:
        """The file to merge, for a whole-file write made after the agent saw the file."""
        if len(op.changes) != 1:
            return None
        (path,) = op.changes
        key = workspace_key(path)
        return path if key in op.resolved.whole and key in op.observed else None

    def _merge_redo(self, op: OpState, path: str) -> RedoResult:
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
        after = FileImage("file", digest=self.blobs.put(merged), mode=mode or new_file_mode())
        effect = self._begin(op, "redo", {path: live})
        self.blobs.restore(self._path(path), after)
        with self.journal.atomic():
            self._settle(op, {path: (live, after)})
            self.journal.end_effect(effect, "merged")
        return RedoResult(True, self._writes(op.changes))
