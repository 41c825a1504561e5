"""Before-images of file and dir keys, and restoring them.

An image of a workspace path is the state of the subtree rooted there: for each path in it,
its kind (file, dir, link), mode, and content (a blob digest, or a link target). An absent
path has an empty image. Restoring makes the subtree exactly the image again: extra paths
are removed, missing ones created, changed bytes and modes put back. `.git` directories and
the top-level `.coagent/` are never part of an image (git state has its own keys).

Blobs live in an `ImageStore`; `MemoryImageStore` is the in-package one. The daemon will
supply its content-addressed store with the same two methods.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from coagent_cli.errors import ExecutionError

Kind = Literal["file", "dir", "link"]


class ImageStore(Protocol):
    def put(self, data: bytes) -> str: ...

    def get(self, digest: str) -> bytes: ...


class MemoryImageStore:
    """Content-addressed blobs in a dict."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._blobs.setdefault(digest, data)
        return digest

    def get(self, digest: str) -> bytes:
        return self._blobs[digest]


@dataclass(frozen=True)
class Entry:
    kind: Kind
    mode: int
    content: str  # blob digest for a file, target for a link, "" for a dir


@dataclass(frozen=True)
class PathImage:
    """The subtree at `path` (workspace-relative, "" = root); empty entries = absent."""

    path: str
    entries: dict[str, Entry] = field(default_factory=dict)

    @property
    def absent(self) -> bool:
        return self.path not in self.entries


def skipped(rel: str) -> bool:
    parts = rel.split("/")
    return ".git" in parts or parts[0] == ".coagent"


def walk(root: Path, rel: str) -> list[str]:
    """Workspace-relative paths in the subtree at rel (rel itself first), minus skipped ones."""
    top = root / rel if rel else root
    if not os.path.lexists(top):
        return []
    found = [rel]
    if top.is_dir() and not top.is_symlink():
        for name in sorted(os.listdir(top)):
            child = f"{rel}/{name}" if rel else name
            if not skipped(child):
                found.extend(walk(root, child))
    return found


def capture(root: Path, rel: str, store: ImageStore) -> PathImage:
    return PathImage(rel, {p: _entry(root / p if p else root, store) for p in walk(root, rel)})


def _entry(path: Path, store: ImageStore) -> Entry:
    st = os.lstat(path)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return Entry("link", mode, os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return Entry("dir", mode, "")
    if stat.S_ISREG(st.st_mode):
        return Entry("file", mode, store.put(path.read_bytes()))
    raise ExecutionError(f"cannot image {path}: not a file, directory or symlink")


def restore(root: Path, image: PathImage, store: ImageStore) -> None:
    try:
        _restore(root, image, store)
    except OSError as e:
        raise ExecutionError(f"could not restore {image.path or '.'}: {e}") from e


def _restore(root: Path, image: PathImage, store: ImageStore) -> None:
    for rel in reversed(walk(root, image.path)):  # deepest first
        want = image.entries.get(rel)
        if want is None or want.kind != _kind(root / rel if rel else root):
            _remove(root / rel if rel else root)
    for rel in sorted(image.entries):
        _put(root / rel if rel else root, image.entries[rel], store)
    for rel in sorted(image.entries, reverse=True):  # dir modes last: writable while filling
        entry = image.entries[rel]
        if entry.kind == "dir":
            os.chmod(root / rel if rel else root, entry.mode)


def _kind(path: Path) -> Kind | None:
    if not os.path.lexists(path):
        return None
    return "link" if path.is_symlink() else "dir" if path.is_dir() else "file"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _put(path: Path, entry: Entry, store: ImageStore) -> None:
    if entry.kind == "dir":
        path.mkdir(exist_ok=True)
        os.chmod(path, entry.mode | stat.S_IWUSR | stat.S_IXUSR)
    elif entry.kind == "link":
        if not path.is_symlink() or os.readlink(path) != entry.content:
            _remove(path)
            os.symlink(entry.content, path)
    else:
        data = store.get(entry.content)
        if not path.is_file() or path.read_bytes() != data:
            if path.is_file():
                os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)  # a read-only file is rewritten too
            path.write_bytes(data)
        os.chmod(path, entry.mode)
