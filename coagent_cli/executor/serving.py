"""Serving a read from stored versions instead of the live files.

read_file is answered from the stored version; list_dir and search run in a scratch copy
of the directories they read, holding the stored versions. Shell reads are never
servable (the core then undoes later writes for the duration of the read instead).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Mapping

from coagent_cli.core.keys import Key
from coagent_cli.core.model import Digest
from coagent_cli.errors import ExecutionError
from coagent_cli.executor import versions
from coagent_cli.executor.footprints import file_paths
from coagent_cli.executor.protocol import RunResult
from coagent_cli.executor.running import RunningMixin
from coagent_cli.executor.seen import SeenMixin
from coagent_cli.executor.state import TOOL_TIMEOUT, OpState
from coagent_cli.tools import execute as tools
from coagent_cli.workspace import workspace_key
from coagent_cli.workspace import paths as ws_paths


class ServingMixin(RunningMixin, SeenMixin):
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

    def _serve_file(self, op: OpState, sources: Mapping[Key, Digest]) -> tuple[int, str]:
        (path,) = file_paths(op.footprint.reads)
        digest = sources.get(workspace_key(path))
        if digest is None:
            return self._perform(op, None)
        data = versions.content(self.blobs, digest)
        if data is None:
            return 1, f"cat: {path}: No such file or directory\n"
        return 0, data.decode("utf-8", "replace")

    def _serve_in_scratch(self, op: OpState, sources: Mapping[Key, Digest]) -> tuple[int, str]:
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
                                    timeout=TOOL_TIMEOUT)
            except ExecutionError as exc:
                return 1, str(exc)
            return done.exit_status, done.output


def _copy_tree(src_root: Path, dst_root: Path, rel: str) -> None:
    src = src_root / rel if rel else src_root
    if not src.is_dir():
        return
    ignore = shutil.ignore_patterns(".git", ws_paths.STATE_DIR_NAME)
    shutil.copytree(src, dst_root / rel if rel else dst_root, symlinks=True, ignore=ignore,
                    dirs_exist_ok=True)
