"""Footprint keys and the covers/conflicts relation.

A key names a piece of the shared state an op reads or writes:

    file:src/a.py       one file (workspace-relative, normalised)
    dir:src             everything below src (dir: alone is the whole tree)
    git:HEAD            a git ref or part (git: alone covers every git key)
    k8s:default/web     an opaque domain key; a name ending in "/" covers the names below it
    *                   everything

Two keys conflict when one covers the other. Spellings are normalised on parse, so
`file:./a/../b` and `file:b` are one key. Paths are always relative to the workspace;
absolute paths and paths that climb out of it are refused here (the adapters turn an
absolute path inside the workspace into a relative one before it gets this far).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from coagent_cli.errors import InvalidKey

FILE = "file"
DIR = "dir"
ALL_SCHEME = "*"


@dataclass(frozen=True, order=True, slots=True)
class Key:
    """A normalised footprint key. Build it with `Key.parse` or the helpers below."""

    scheme: str
    name: str

    def __str__(self) -> str:
        return "*" if self.scheme == ALL_SCHEME else f"{self.scheme}:{self.name}"

    def __repr__(self) -> str:
        return f"Key({str(self)!r})"

    @staticmethod
    def parse(text: str) -> "Key":
        return _parse(text)

    @property
    def is_concrete(self) -> bool:
        """True for a key that names one thing (covers nothing but itself)."""
        if self.scheme == ALL_SCHEME or self.scheme == DIR:
            return False
        if self.scheme == FILE:
            return True
        return self.name != "" and not self.name.endswith("/")

    def covers(self, other: "Key") -> bool:
        return covers(self, other)

    def conflicts(self, other: "Key") -> bool:
        return covers(self, other) or covers(other, self)


ALL = Key(ALL_SCHEME, "")


def file_key(path: str) -> Key:
    return Key(FILE, _norm_path(path, allow_root=False))


def dir_key(path: str = "") -> Key:
    return Key(DIR, _norm_path(path, allow_root=True))


def _norm_path(path: str, *, allow_root: bool) -> str:
    if "\0" in path:
        raise InvalidKey(f"path contains a NUL byte: {path!r}")
    if path.startswith("/"):
        raise InvalidKey(f"absolute path in a key (keys are workspace-relative): {path!r}")
    norm = posixpath.normpath(path) if path else "."
    if norm == ".":
        if allow_root:
            return ""
        raise InvalidKey("a file key needs a path, not the workspace root")
    if norm == ".." or norm.startswith("../"):
        raise InvalidKey(f"path climbs out of the workspace: {path!r}")
    return norm


@lru_cache(maxsize=65536)
def _parse(text: str) -> Key:
    text = text.strip()
    if text == "*":
        return ALL
    scheme, sep, name = text.partition(":")
    if not sep or not scheme or not scheme.replace("-", "").replace("_", "").isalnum():
        raise InvalidKey(f"not a key (want scheme:name or *): {text!r}")
    if scheme == FILE:
        return file_key(name)
    if scheme == DIR:
        return dir_key(name)
    return Key(scheme, name)


def covers(a: Key, b: Key) -> bool:
    """Does key `a` cover key `b` (everything b names is part of a)?"""
    if a.scheme == ALL_SCHEME:
        return True
    if b.scheme == ALL_SCHEME:
        return False
    if a.scheme == DIR:
        return b.scheme in (FILE, DIR) and _path_under(b.name, a.name)
    if a.scheme == FILE:
        return b.scheme == FILE and a.name == b.name
    if a.scheme != b.scheme:
        return False
    if a.name == b.name or a.name == "":
        return True
    return a.name.endswith("/") and b.name.startswith(a.name)


def _path_under(path: str, prefix: str) -> bool:
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def conflicts(a: Key, b: Key) -> bool:
    return covers(a, b) or covers(b, a)


def any_conflict(xs: Iterable[Key], ys: Iterable[Key]) -> bool:
    ys = tuple(ys)
    return any(conflicts(x, y) for x in xs for y in ys)


def keys(*texts: str) -> frozenset[Key]:
    """Parse several keys at once: keys("file:a", "dir:src")."""
    return frozenset(Key.parse(t) for t in texts)
