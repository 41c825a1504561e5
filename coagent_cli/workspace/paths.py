"""Keeping paths inside the workspace.

A path given to the workspace layer is workspace-relative (posix) or absolute. It is
accepted only if it names something strictly inside the workspace, outside coagent's own
state directory, and if every directory on the way to it, with symlinks followed as the
kernel would follow them, is inside the workspace too. The last component is never
followed: the workspace layer replaces a symlink, it does not write through it.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from coagent_cli.errors import OutsideWorkspace

STATE_DIR_NAME = ".coagent"


def relative(workspace: Path, path: str | Path) -> str:
    """The normalised workspace-relative posix spelling of `path`, or OutsideWorkspace."""
    text = os.fspath(path)
    if "\0" in text:
        raise OutsideWorkspace(f"path contains a NUL byte: {text!r}")
    if os.path.isabs(text):
        text = os.path.relpath(os.path.normpath(text), os.fspath(workspace))
    rel = posixpath.normpath(text.replace(os.sep, "/"))
    if rel in (".", "") or rel == ".." or rel.startswith("../") or rel.startswith("/"):
        raise OutsideWorkspace(f"not a path inside the workspace: {os.fspath(path)!r}")
    if rel == STATE_DIR_NAME or rel.startswith(STATE_DIR_NAME + "/"):
        raise OutsideWorkspace(f"{rel!r} is coagent's own state, not workspace content")
    return rel


def checked(workspace: Path, path: str | Path) -> Path:
    """Absolute path for `path` after checking that its parents resolve inside.

    `workspace` must already be resolved (Path.resolve()). Check again right before
    each write: a symlink placed earlier in the same batch may change the answer.
    """
    rel = relative(workspace, path)
    full = workspace / rel
    parent = Path(os.path.realpath(full.parent))
    if parent != workspace and workspace not in parent.parents:
        raise OutsideWorkspace(f"{rel!r} leads outside the workspace (through a symlink)")
    if parent != workspace:
        relative(workspace, parent)  # a symlink into .coagent/ is refused as well
    return full
