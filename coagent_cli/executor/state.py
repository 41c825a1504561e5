"""What `WorkspaceExecutor` keeps per op, and the state its parts share.

`ExecutorState` is the base of the executor's mixins (journaling, images, seen, serving,
rebase, adopt): it names the fields `WorkspaceExecutor.__init__` sets and holds the
look-ups they all use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from coagent_cli.core.keys import Key
from coagent_cli.core.model import Change, Digest
from coagent_cli.errors import ExecutionError
from coagent_cli.executor import versions
from coagent_cli.executor.footprints import Resolved
from coagent_cli.executor.protocol import Footprint, OpRequest
from coagent_cli.journal import BlobStore, FileImage, Journal
from coagent_cli.tools import ToolLibrary, ToolResult
from coagent_cli.workspace import Snapshot, Snapshotter, workspace_key
from coagent_cli.workspace import paths as ws_paths

Side = Literal["before", "after"]
Changes = dict[str, tuple[FileImage, FileImage]]  # path -> (before, after)
TOOL_TIMEOUT = 120.0


@dataclass
class OpState:
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


class ExecutorState:
    """The fields `WorkspaceExecutor.__init__` sets, and the look-ups on them."""

    workspace: Path
    state_dir: Path
    journal: Journal
    blobs: BlobStore
    library: ToolLibrary | None
    rebase_stale_writes: bool
    _ops: dict[int, OpState]
    _seen: dict[str, dict[Key, Digest]]  # agent -> key -> version it saw
    _lock: threading.Lock
    _snapshotter: Snapshotter | None

    def _op(self, op_id: int) -> OpState:
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


def new_file_mode() -> int:
    """The mode a newly written file gets under this process's umask."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644
