"""Workspace snapshots for raw commands, whose footprint nobody declared.

A `Snapshot` has two halves:

- `tree`: a tree in a private shadow git (`ShadowGit`) holding every file of the
  workspace except `.git/` and `.coagent/`. `git add -A` uses the shadow index as a stat
  cache, so a snapshot of an unchanged tree costs a stat per file; `write-tree` names it.
  Ignored files are included by default (a raw command that deletes `build/` must be
  undoable); pass `honor_gitignore=True` to trade that for speed.
- `gitdir`: the digest of a manifest of the user's `.git` (`GitDirManifests`).

`changes(before, after)` lists every path that differs, with FileImages on both sides.
Images always point into the BlobStore, never into the shadow repository: the journal
can then revert an effect from its own records alone, and the shadow repository stays
a disposable cache (it may be deleted or garbage-collected without losing an undo).
Only changed paths are copied over, so the cost is proportional to the change.

Limits: git tracks only the exec bit, so a file's image from the work tree has mode
0o644 or 0o755 (files below `.git/` keep their exact bits). Empty directories are not
part of a snapshot. A nested repository (a subdirectory with its own `.git`) is not
descended into; its path is listed in `Snapshot.opaque`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from coagent_cli.core.keys import Key, file_key
from coagent_cli.errors import ExecutionError, OutsideWorkspace
from coagent_cli.journal.blobs import BlobStore, FileImage
from coagent_cli.workspace import paths
from coagent_cli.workspace.gitdir import GIT_DIR_NAME, GitDirManifests
from coagent_cli.workspace.shadowgit import ShadowGit

_ABSENT = FileImage.absent()
_GITLINK = "160000"
_NO_ENTRY = ("000000", "")
_ARGS_PER_CALL = 500  # paths per git command line, well below any ARG_MAX


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The workspace at one moment; equal snapshots mean equal contents."""

    tree: str  # shadow git tree id of the work tree
    gitdir: str  # blob digest of the `.git` manifest
    opaque: tuple[str, ...] = ()  # nested repositories git could not look into


@dataclass(frozen=True, slots=True)
class PathChange:
    path: str  # workspace-relative posix path
    before: FileImage
    after: FileImage

    @property
    def key(self) -> Key:
        return workspace_key(self.path)


def workspace_key(path: str) -> Key:
    """The footprint key a changed workspace path belongs to.

    `.git/HEAD` -> `git:HEAD`, `.git/index` -> `git:index`, `.git/refs/heads/x` ->
    `git:ref/heads/x` (the spelling of DESIGN.md), `.git/objects/...` -> `git:objects/`
    (objects are content-addressed: one covering key, not one per object), any other
    `.git/X` -> `git:X`; everything else -> `file:<path>`.
    """
    if path != GIT_DIR_NAME and not path.startswith(GIT_DIR_NAME + "/"):
        return file_key(path)
    inner = path[len(GIT_DIR_NAME) + 1 :]
    if inner.startswith("refs/"):
        return Key("git", "ref/" + inner[len("refs/") :])
    if inner.startswith("objects/"):
        return Key("git", "objects/")
    return Key("git", inner)


class Snapshotter:
    """Snapshots of one workspace, kept in `<state_dir>/shadow.git`; safe to share between
    threads (calls are serialised), but one Snapshotter per workspace."""

    def __init__(
        self,
        workspace: Path,
        state_dir: Path,
        blobs: BlobStore,
        *,
        honor_gitignore: bool = False,
        timeout: float = 120.0,
    ) -> None:
        self.workspace = Path(workspace).resolve()
        self._blobs = blobs
        self._honor_gitignore = honor_gitignore
        state = Path(state_dir).resolve()
        self._git = ShadowGit(self.workspace, state / "shadow.git", timeout=timeout)
        self._excluded = _excluded_dirs(self.workspace, state)
        self._git.ensure(self._excluded)
        _hide_from_user_git(state)
        self._gitdir = GitDirManifests(self.workspace, blobs)
        self._digests: dict[str, str] = {}  # git blob id -> sha256 in the blob store
        self._lock = threading.RLock()  # the shadow index admits one writer at a time

    # -- taking and comparing snapshots -------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            opaque = self._add_all()
            tree = self._git.run(["write-tree"]).stdout.decode().strip()
            return Snapshot(tree=tree, gitdir=self._gitdir.snapshot(), opaque=opaque)

    def changes(self, before: Snapshot, after: Snapshot) -> list[PathChange]:
        with self._lock:
            return self._changes(before, after)

    def _changes(self, before: Snapshot, after: Snapshot) -> list[PathChange]:
        found = self._tree_changes(before.tree, after.tree)
        if before.gitdir != after.gitdir:
            old, new = self._gitdir.load(before.gitdir), self._gitdir.load(after.gitdir)
            found += _manifest_changes(old, new)
        return sorted(found, key=lambda c: c.path)

    def images_at(self, snapshot: Snapshot, paths_: Iterable[str]) -> dict[str, FileImage]:
        """The image each path had in `snapshot` (absent if it did not exist)."""
        with self._lock:
            return self._images_at(snapshot, [paths.relative(self.workspace, p) for p in paths_])

    def _images_at(self, snapshot: Snapshot, rels: list[str]) -> dict[str, FileImage]:
        tree_paths = [r for r in rels if not _in_gitdir(r)]
        entries = self._ls_tree(snapshot.tree, tree_paths)
        images = self._images(entries.values())
        manifest = self._gitdir.load(snapshot.gitdir)
        return {
            r: manifest.get(r, _ABSENT)
            if _in_gitdir(r)
            else images.get(entries.get(r, _NO_ENTRY), _ABSENT)
            for r in rels
        }

    # -- putting paths back -------------------------------------------------------------

    def restore(self, paths_: Iterable[str], snapshot: Snapshot) -> None:
        """Put `paths_` back as they were in `snapshot`: bytes, exec bit, links, absence."""
        with self._lock:
            images = self.images_at(snapshot, paths_)
            kept = self._dirs_in(snapshot, _parents(images))
            self.apply(images, prune=lambda d: d not in kept)

    def apply(
        self, images: Mapping[str, FileImage], *, prune: Callable[[str], bool] | None = None
    ) -> None:
        """Make each path match its image. Every path is checked before anything is touched.

        Removals go first, deepest first, then files and links, shallowest first, so a
        directory can turn into a file and back. After the removals, empty parent
        directories for which `prune(dir)` is true are removed as well.
        """
        rels = {paths.relative(self.workspace, p): img for p, img in images.items()}
        for rel in rels:
            paths.checked(self.workspace, rel)
        _refuse_paths_below_links(rels)
        gone = sorted((r for r, i in rels.items() if i.kind == "absent"), key=_depth, reverse=True)
        for rel in gone:
            self._blobs.restore(paths.checked(self.workspace, rel), _ABSENT)
        if prune is not None:
            self._prune(gone, prune)
        for rel in sorted((r for r, i in rels.items() if i.kind != "absent"), key=_depth):
            self._blobs.restore(paths.checked(self.workspace, rel), rels[rel])

    # -- internals ----------------------------------------------------------------------

    def _add_all(self) -> tuple[str, ...]:
        # -f takes ignored files too, and with them our own state unless it is excluded
        # by pathspec; without -f the shadow repo's info/exclude keeps it out.
        args = ["add", "-A", "--ignore-errors"]
        if not self._honor_gitignore:
            args += ["-f", "--", ".", *(f":(exclude,top){d}" for d in self._excluded)]
        done = self._git.run(args, check=False)
        if done.returncode == 0:
            return ()
        lines = done.stderr.decode(errors="replace").splitlines()
        opaque = tuple(sorted(_nested_repo(line) for line in lines if _nested_repo(line)))
        bad = [ln for ln in lines if not _nested_repo(ln) and not ln.startswith("fatal: adding")]
        if bad or not opaque:
            message = done.stderr.decode(errors="replace").strip()
            raise ExecutionError(f"shadow snapshot failed: {message}")
        return opaque

    def _tree_changes(self, before: str, after: str) -> list[PathChange]:
        if before == after:
            return []
        args = ["diff-tree", "-r", "-z", "--no-renames", "--raw", before, after]
        out = self._git.run(args).stdout
        fields = out.split(b"\0")
        raw: list[tuple[str, tuple[str, str], tuple[str, str]]] = []
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            old_mode, new_mode, old_id, new_id, _status = meta.decode().lstrip(":").split(" ")
            raw.append((os.fsdecode(path), (old_mode, old_id), (new_mode, new_id)))
        images = self._images([e for _, b, a in raw for e in (b, a)])
        return [
            PathChange(p, images.get(b, _ABSENT), images.get(a, _ABSENT))
            for p, b, a in raw
            if _GITLINK not in (b[0], a[0])
        ]

    def _images(self, entries: Iterable[tuple[str, str]]) -> dict[tuple[str, str], FileImage]:
        """FileImages for (git mode, git blob id) entries; the bytes go to the blob store."""
        wanted = {e for e in entries if e[0] not in ("000000", _GITLINK)}
        links = self._read_blobs({oid for mode, oid in wanted if mode == "120000"})
        self._import_blobs({oid for mode, oid in wanted if mode != "120000"})
        return {(mode, oid): _image(mode, oid, links, self._digests) for mode, oid in wanted}

    def _import_blobs(self, oids: set[str]) -> None:
        missing = oids - self._digests.keys()
        for oid, data in self._read_blobs(missing).items():
            self._digests[oid] = self._blobs.put(data)

    def _read_blobs(self, oids: set[str]) -> dict[str, bytes]:
        """Contents of shadow blobs, all read by one `git cat-file --batch`."""
        if not oids:
            return {}
        order = sorted(oids)
        request = "".join(f"{oid}\n" for oid in order).encode()
        out = self._git.run(["cat-file", "--batch"], stdin=request).stdout
        found: dict[str, bytes] = {}
        pos = 0
        for oid in order:
            header_end = out.index(b"\n", pos)
            _, kind, size = out[pos:header_end].decode().split(" ")
            if kind != "blob":
                raise ExecutionError(f"shadow object {oid} is a {kind}, not a blob")
            start = header_end + 1
            found[oid] = out[start : start + int(size)]
            pos = start + int(size) + 1
        return found

    def _ls_tree(self, tree: str, rels: list[str]) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        wanted = set(rels)
        for i in range(0, len(rels), _ARGS_PER_CALL):
            chunk = rels[i : i + _ARGS_PER_CALL]
            args = ["ls-tree", "-r", "-z", "--full-tree", tree, "--", *chunk]
            out = self._git.run(args, literal=True).stdout
            for line in filter(None, out.split(b"\0")):
                meta, _, path = line.partition(b"\t")
                mode, _kind, oid = meta.decode().split(" ")
                name = os.fsdecode(path)
                if name in wanted:
                    found[name] = (mode, oid)
        return found

    def _dirs_in(self, snapshot: Snapshot, dirs: set[str]) -> set[str]:
        """Which of `dirs` exist (hold anything) in `snapshot`."""
        manifest_dirs = _parents(self._gitdir.load(snapshot.gitdir))
        tree_dirs = sorted(d for d in dirs if not _in_gitdir(d) and d != GIT_DIR_NAME)
        present = {d for d in dirs if d in manifest_dirs}
        for i in range(0, len(tree_dirs), _ARGS_PER_CALL):
            chunk = tree_dirs[i : i + _ARGS_PER_CALL]
            args = ["ls-tree", "-r", "-d", "-z", "--name-only", "--full-tree", snapshot.tree]
            out = self._git.run([*args, "--", *chunk], literal=True).stdout
            present |= {os.fsdecode(p) for p in out.split(b"\0") if p} & dirs
        return present

    def _prune(self, gone: list[str], prune: Callable[[str], bool]) -> None:
        for folder in sorted(_parents(gone), key=_depth, reverse=True):
            target = self.workspace / folder
            if not prune(folder) or target.is_symlink() or not target.is_dir():
                continue
            if not any(target.iterdir()):
                try:
                    target.rmdir()
                except OSError as exc:
                    raise ExecutionError(f"cannot remove empty directory {folder}: {exc}") from exc


def _image(
    mode: str, oid: str, links: Mapping[str, bytes], digests: Mapping[str, str]
) -> FileImage:
    if mode == "120000":
        return FileImage("symlink", target=os.fsdecode(links[oid]))
    return FileImage("file", digest=digests[oid], mode=0o755 if mode == "100755" else 0o644)


def _manifest_changes(
    before: Mapping[str, FileImage], after: Mapping[str, FileImage]
) -> list[PathChange]:
    return [
        PathChange(p, before.get(p, _ABSENT), after.get(p, _ABSENT))
        for p in before.keys() | after.keys()
        if before.get(p) != after.get(p)
    ]


def _excluded_dirs(workspace: Path, state_dir: Path) -> list[str]:
    excluded = [paths.STATE_DIR_NAME]
    if workspace in state_dir.parents:
        rel = state_dir.relative_to(workspace).as_posix()
        if not rel.startswith(paths.STATE_DIR_NAME + "/") and rel != paths.STATE_DIR_NAME:
            excluded.append(rel)
    return excluded


def _hide_from_user_git(state: Path) -> None:
    """A `.gitignore` of `*` keeps our state out of the user's `git status`.

    It is written inside our own state directory: the user's `.git` is never touched.
    """
    ignore = state / ".gitignore"
    try:
        if not ignore.exists():
            ignore.write_text("# coagent state: not part of the project\n*\n")
    except OSError as exc:
        raise ExecutionError(f"cannot write {ignore}: {exc}") from exc


def _refuse_paths_below_links(images: Mapping[str, FileImage]) -> None:
    """A batch that puts a file below a symlink it also places would write through the link."""
    links = {p for p, i in images.items() if i.kind == "symlink"}
    for rel, image in images.items():
        below = links & _parents([rel])
        if image.kind != "absent" and below:
            raise OutsideWorkspace(f"{rel!r} would be written through the symlink {min(below)!r}")


def _nested_repo(line: str) -> str:
    """`error: 'sub/' does not have a commit checked out` -> `sub`; else ''."""
    marker = "' does not have a commit checked out"
    if line.startswith("error: '") and line.endswith(marker):
        return line[len("error: '") : -len(marker)].rstrip("/")
    return ""


def _in_gitdir(rel: str) -> bool:
    return rel == GIT_DIR_NAME or rel.startswith(GIT_DIR_NAME + "/")


def _parents(rels: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for rel in rels:
        head = os.path.dirname(rel)
        while head and head not in found:
            found.add(head)
            head = os.path.dirname(head)
    return found


def _depth(rel: str) -> int:
    return rel.count("/")
