"""What each agent has seen of a file: the merge base of its whole-file writes.

The version its read ops observed, then the after-images of its own writes to that file.
`_settle` records an op's latest application, and with it what its agent now knows.
"""

from __future__ import annotations

from typing import Mapping

from coagent_cli.core.keys import Key
from coagent_cli.core.model import Digest
from coagent_cli.executor import versions
from coagent_cli.executor.footprints import file_paths
from coagent_cli.executor.journaling import JournalingMixin
from coagent_cli.executor.state import Changes, OpState
from coagent_cli.workspace import workspace_key


class SeenMixin(JournalingMixin):
    def _settle(self, op: OpState, changes: Changes) -> None:
        journaled = op.ever_applied
        op.changes = changes
        op.applied = bool(changes)
        op.ever_applied = op.ever_applied or op.applied
        if changes or journaled:
            self._journal_op(op)
        self._note_writes(op)

    def _note_reads(self, op: OpState, served: Mapping[Key, Digest]) -> None:
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

    def _note_writes(self, op: OpState) -> None:
        """An agent knows what it wrote to a file it had seen, or wrote whole."""
        writes = self._writes(op.changes)
        with self._lock:
            seen = self._seen.setdefault(op.request.agent, {})
            for key, change in writes.items():
                if key.scheme == "file" and (key in op.resolved.whole or key in seen):
                    seen[key] = change.after
