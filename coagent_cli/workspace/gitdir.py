"""Snapshots of the user's `.git`, which the shadow git cannot track.

Git refuses to add any path named `.git`, so the user's repository is covered by a
manifest walk instead: every file below `.git/` becomes a FileImage whose bytes live in
the blob store. A stat cache (size, mtime, ctime, inode, mode -> image) makes a walk of
an unchanged repository cost one lstat per file; only changed files are read.

A file whose ctime is too recent to trust (it may change again within the timestamp
granularity, git's "racy" case) is hashed but not cached, so the next walk reads it again.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from coagent_cli.errors import ExecutionError
from coagent_cli.journal.blobs import BlobStore, FileImage

GIT_DIR_NAME = ".git"
_RACY_NS = 1_000_000_000  # trust a cached hash only for files last changed >1 s before the walk
_KEPT_MANIFESTS = 16  # parsed manifests kept in memory; older ones are re-read from blobs

Manifest = dict[str, FileImage]
_StatKey = tuple[int, int, int, int, int]


class GitDirManifests:
    """Walks `<workspace>/.git` into manifests and stores each manifest as a blob."""

    def __init__(self, workspace: Path, blobs: BlobStore) -> None:
        self._root = workspace / GIT_DIR_NAME
        self._blobs = blobs
        self._cache: dict[str, tuple[_StatKey, FileImage]] = {}
        self._loaded: OrderedDict[str, Manifest] = OrderedDict()

    def snapshot(self) -> str:
        """Walk `.git` now; returns the digest of the stored manifest."""
        manifest = self._walk()
        text = json.dumps({p: i.to_json() for p, i in sorted(manifest.items())})
        digest = self._blobs.put(text.encode())
        self._keep(digest, manifest)
        return digest

    def load(self, digest: str) -> Manifest:
        manifest = self._loaded.get(digest)
        if manifest is None:
            data = json.loads(self._blobs.get(digest))
            manifest = {p: FileImage.from_json(d) for p, d in data.items()}
        self._keep(digest, manifest)
        return manifest

    def _keep(self, digest: str, manifest: Manifest) -> None:
        self._loaded[digest] = manifest
        self._loaded.move_to_end(digest)
        while len(self._loaded) > _KEPT_MANIFESTS:
            self._loaded.popitem(last=False)

    def _walk(self) -> Manifest:
        started = time.time_ns()
        seen: Manifest = {}
        try:
            for rel, st in _entries(self._root, GIT_DIR_NAME):
                image = self._image(rel, st, started)
                if image.kind != "absent":  # removed while we walked: not part of this state
                    seen[rel] = image
        except OSError as exc:
            raise ExecutionError(f"cannot read {self._root}: {exc}") from exc
        self._cache = {p: self._cache[p] for p in seen if p in self._cache}
        return seen

    def _image(self, rel: str, st: os.stat_result, started: int) -> FileImage:
        key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)
        cached = self._cache.get(rel)
        if cached is not None and cached[0] == key:
            return cached[1]
        image = self._blobs.capture(self._root.parent / rel)
        if st.st_ctime_ns < started - _RACY_NS and st.st_mtime_ns < started - _RACY_NS:
            self._cache[rel] = (key, image)
        return image


def _entries(path: Path, rel: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every file and symlink at or below `path` (not following symlinks), with lstat."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            yield rel, st  # `.git` may be a file ("gitdir: ...") in worktrees and submodules
        return
    stack = [(path, rel)]
    while stack:
        folder, prefix = stack.pop()
        try:
            found = list(_listing(folder, prefix))
        except FileNotFoundError:
            continue  # removed while we walked
        for name, entry, st in found:
            if stat.S_ISDIR(st.st_mode):
                stack.append((Path(entry.path), name))
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                yield name, st


def _listing(folder: Path, prefix: str) -> Iterator[tuple[str, os.DirEntry[str], os.stat_result]]:
    with os.scandir(folder) as it:
        for entry in it:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield f"{prefix}/{entry.name}", entry, st
