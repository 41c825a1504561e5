"""Content-addressed blob store and the file images built on it.

A blob is stored once under `<root>/<first two hex digits>/<rest of the sha256>`; writing
the same bytes twice costs one hash and one `stat`. Every write goes to a temporary file
in `<root>/tmp/`, is fsynced, then renamed into place (and the directory fsynced), so a
blob that exists is whole: a crash leaves at most a stray temporary file.

A `FileImage` is what one path looked like at one moment: a regular file (digest of its
bytes plus its permission bits), a symlink (its target), or nothing at all. `capture`
takes an image of a live path; `restore` makes a live path match an image again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from coagent_cli.errors import ExecutionError, JournalError

ImageKind = Literal["file", "symlink", "absent"]
_CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class FileImage:
    """One path's state: `file` (digest, mode), `symlink` (target) or `absent`."""

    kind: ImageKind
    digest: str | None = None  # sha256 hex of the bytes; files only
    mode: int | None = None  # permission bits (stat.S_IMODE), exec bit included; files only
    target: str | None = None  # the link text as readlink returns it; symlinks only

    def __post_init__(self) -> None:
        ok = {
            "file": self.digest is not None and self.mode is not None and self.target is None,
            "symlink": self.target is not None and self.digest is None and self.mode is None,
            "absent": self.digest is None and self.mode is None and self.target is None,
        }.get(self.kind, False)
        if not ok:
            raise ValueError(f"inconsistent FileImage: {self!r}")

    @staticmethod
    def absent() -> "FileImage":
        return _ABSENT

    def to_json(self) -> dict[str, Any]:
        fields = {"digest": self.digest, "mode": self.mode, "target": self.target}
        return {"kind": self.kind, **{k: v for k, v in fields.items() if v is not None}}

    @staticmethod
    def from_json(data: dict[str, Any]) -> "FileImage":
        return FileImage(data["kind"], data.get("digest"), data.get("mode"), data.get("target"))


_ABSENT = FileImage("absent")


class BlobStore:
    """sha256-addressed blobs under one directory, written atomically and deduplicated."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create blob store at {self.root}: {exc}") from exc

    def path_of(self, digest: str) -> Path:
        if len(digest) != 64 or not _HEX.issuperset(digest):
            raise JournalError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path_of(digest).exists()

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            self._commit(digest, lambda out: out.write(data))
        return digest

    def get(self, digest: str) -> bytes:
        try:
            data = self.path_of(digest).read_bytes()
        except OSError as exc:
            raise JournalError(f"blob {digest} unreadable: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise JournalError(f"blob {digest} is corrupt (contents do not match the digest)")
        return data

    # -- images -----------------------------------------------------------------------

    def capture(self, path: Path) -> FileImage:
        """Image of `path` as it is now; a regular file's bytes are stored here."""
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                return FileImage("symlink", target=os.readlink(path))
            if not stat.S_ISREG(st.st_mode):
                raise ExecutionError(f"cannot capture {path}: not a regular file or symlink")
            return self._capture_file(path)
        except FileNotFoundError:
            return _ABSENT
        except NotADirectoryError:
            return _ABSENT
        except OSError as exc:
            raise ExecutionError(f"cannot capture {path}: {exc}") from exc

    def restore(self, path: Path, image: FileImage) -> None:
        """Make `path` match `image`: bytes and mode, link target, or gone.

        Missing parent directories are created. The path itself is replaced, never
        followed: a symlink at `path` is swapped, not written through.
        """
        path = Path(path)
        try:
            if image.kind == "absent":
                _remove(path)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            _clear_empty_dir(path)
            if image.kind == "file":
                self._restore_file(path, image)
            else:
                _place_symlink(path, image.target or "")
            _fsync_dir(path.parent)
        except OSError as exc:
            raise ExecutionError(f"cannot restore {path}: {exc}") from exc

    # -- internals --------------------------------------------------------------------

    def _capture_file(self, path: Path) -> FileImage:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as src:
            mode = stat.S_IMODE(os.fstat(src.fileno()).st_mode)
            digest = self._put_stream(src)
        return FileImage("file", digest=digest, mode=mode)

    def _put_stream(self, src: Any) -> str:
        try:
            tmp = tempfile.NamedTemporaryFile(dir=self._tmp, delete=False)
        except OSError as exc:
            raise JournalError(f"blob store not writable: {exc}") from exc
        hasher = hashlib.sha256()
        with tmp:
            while chunk := src.read(_CHUNK):
                hasher.update(chunk)
                tmp.write(chunk)
            tmp.flush()
            os.fsync(tmp.fileno())
        digest = hasher.hexdigest()
        self._install(Path(tmp.name), digest)
        return digest

    def _commit(self, digest: str, write: Any) -> None:
        try:
            with tempfile.NamedTemporaryFile(dir=self._tmp, delete=False) as tmp:
                write(tmp)
                tmp.flush()
                os.fsync(tmp.fileno())
        except OSError as exc:
            raise JournalError(f"cannot write blob {digest}: {exc}") from exc
        self._install(Path(tmp.name), digest)

    def _install(self, tmp: Path, digest: str) -> None:
        final = self.path_of(digest)
        try:
            if final.exists():
                tmp.unlink()
                return
            final.parent.mkdir(exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            raise JournalError(f"cannot store blob {digest}: {exc}") from exc

    def _restore_file(self, path: Path, image: FileImage) -> None:
        assert image.digest is not None and image.mode is not None
        data = self.get(image.digest)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.coagent-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                os.fchmod(out.fileno(), image.mode)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise


def _place_symlink(path: Path, target: str) -> None:
    tmp = path.parent / f".{path.name}.coagent-link-{os.getpid()}"
    _unlink_quietly(tmp)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(st.st_mode):
        os.rmdir(path)  # only an empty directory: its contents are other paths' business
    else:
        os.unlink(path)
    _fsync_dir(path.parent)


def _clear_empty_dir(path: Path) -> None:
    """A file is coming where an (emptied) directory stands: remove the directory."""
    if path.is_dir() and not path.is_symlink():
        os.rmdir(path)


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
