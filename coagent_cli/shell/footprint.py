"""The pieces the classifier builds a footprint from.

`Effect` is the footprint of one part of a line; effects of the parts are combined into
one. `Place` says where relative paths resolve (the possible working directories, the
workspace, HOME, for-loop bindings); `Builder` turns path words into keys through it.
`Unknown` is raised anywhere below a simple command when we cannot be sure; the
classifier turns it into a 'raw' effect with its message as the reason. It never leaves
the classifier.

Paths are normalised lexically (`a/../b` is `b`); symlinks are not followed, so the caller
passes a resolved workspace and cwd.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace
from typing import Literal

from coagent_cli.core.keys import Key, dir_key, file_key
from coagent_cli.shell.words import Word

Kind = Literal["read", "write", "irreversible", "raw", "tool"]

# How demanding each kind is when parts of a line are combined. An irreversible part wins
# over a raw one: the raw part could be undone from snapshots, the network call cannot.
PRECEDENCE: dict[str, int] = {"read": 0, "write": 1, "raw": 2, "irreversible": 3, "tool": 0}

# Device files that are no part of any state.
_DEVICES = ("/dev/null", "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/tty", "/dev/zero",
            "/dev/urandom", "/dev/random")
_DEVICE_DIRS = ("/dev/fd/", "/proc/self/fd/")


class Unknown(Exception):
    """We cannot be sure what this part touches. Internal to the classifier."""


@dataclass(frozen=True, slots=True)
class Effect:
    kind: Kind = "read"
    reads: frozenset[Key] = frozenset()
    writes: frozenset[Key] = frozenset()
    outside: tuple[str, ...] = ()
    outside_writes: tuple[str, ...] = ()
    reason: str = ""
    names: tuple[str, ...] = ()
    truncates: frozenset[Key] = frozenset()  # written by a truncating redirect (> >| &>)

    def __or__(self, other: "Effect") -> "Effect":
        first = self if PRECEDENCE[self.kind] >= PRECEDENCE[other.kind] else other
        return Effect(
            kind=first.kind,
            reads=self.reads | other.reads,
            writes=self.writes | other.writes,
            outside=_merge(self.outside, other.outside),
            outside_writes=_merge(self.outside_writes, other.outside_writes),
            reason=first.reason,
            names=_merge(self.names, other.names),
            truncates=self.truncates | other.truncates,
        )


def _merge(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return a + tuple(x for x in b if x not in a)


def raw(reason: str) -> Effect:
    return Effect(kind="raw", reason=reason)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a simple command runs. An empty `cwds` means the directory is not known."""

    workspace: str
    cwds: tuple[str, ...]
    home: str | None
    bindings: tuple[tuple[str, tuple[Word, ...]], ...] = ()

    def with_cwds(self, cwds: tuple[str, ...]) -> "Place":
        return replace(self, cwds=tuple(dict.fromkeys(cwds)))

    def bound(self, name: str) -> tuple[Word, ...] | None:
        for key, words in reversed(self.bindings):
            if key == name:
                return words
        return None

    def bind(self, name: str, words: tuple[Word, ...]) -> "Place":
        return replace(self, bindings=self.bindings + ((name, words),))

    def absolute(self, path: str) -> tuple[str, ...]:
        """The absolute, normalised spellings `path` can have (one per possible cwd)."""
        if "\0" in path:
            raise Unknown("a path contains a NUL byte")
        if path.startswith("~"):
            path = self._expand_tilde(path)
        if path.startswith("/"):
            return (posixpath.normpath(path).replace("//", "/", 1),)
        if not self.cwds:
            raise Unknown(f"relative path {path!r} after a change of directory we cannot follow")
        return tuple(posixpath.normpath(posixpath.join(cwd, path)) for cwd in self.cwds)

    def _expand_tilde(self, path: str) -> str:
        head, sep, rest = path.partition("/")
        if head != "~" or self.home is None:
            raise Unknown(f"cannot resolve {head!r}")
        return self.home + sep + rest

    def relative(self, absolute: str) -> str | None:
        """The workspace-relative form of an absolute path, or None when it is outside."""
        ws = self.workspace
        if absolute == ws:
            return ""
        if absolute.startswith(ws.rstrip("/") + "/"):
            return absolute[len(ws.rstrip("/")) + 1:]
        return None


@dataclass
class Builder:
    """Collects the footprint of one simple command."""

    place: Place
    reads: set[Key] = field(default_factory=set)
    writes: set[Key] = field(default_factory=set)
    outside: list[str] = field(default_factory=list)
    outside_writes: list[str] = field(default_factory=list)

    def read(self, word: Word, *, tree: bool = False) -> None:
        self._add(word, tree=tree, write=False)

    def write(self, word: Word, *, tree: bool = False) -> None:
        self._add(word, tree=tree, write=True)

    def read_cwd(self) -> None:
        self.read(Word.literal("."), tree=True)

    def read_key(self, key: Key) -> None:
        self.reads.add(key)

    def effect(self, name: str) -> Effect:
        wrote = bool(self.writes or self.outside_writes)
        return Effect(
            kind="write" if wrote else "read",
            reads=frozenset(self.reads),
            writes=frozenset(self.writes),
            outside=tuple(dict.fromkeys(self.outside)),
            outside_writes=tuple(dict.fromkeys(self.outside_writes)),
            names=(name,),
        )

    def _add(self, word: Word, *, tree: bool, write: bool) -> None:
        if word.procsub:
            return
        path, tree = _covering_path(word, tree)
        for absolute in self.place.absolute(path):
            self._add_absolute(absolute, tree=tree, write=write)

    def _add_absolute(self, absolute: str, *, tree: bool, write: bool) -> None:
        if absolute in _DEVICES or absolute.startswith(_DEVICE_DIRS):
            return
        rel = self.place.relative(absolute)
        if rel is None:
            self.outside.append(absolute)
            if write:
                self.outside_writes.append(absolute)
            return
        key = dir_key(rel) if tree or rel == "" else file_key(rel)
        (self.writes if write else self.reads).add(key)


def _covering_path(word: Word, tree: bool) -> tuple[str, bool]:
    """The path a word names, or the directory that covers every path it may name."""
    if word.splits:
        raise Unknown(f"unquoted expansion in {word.text!r} may split into several words")
    if word.exact:
        return word.text, tree
    if "/" in word.prefix:
        return word.prefix.rsplit("/", 1)[0] or "/", True
    if word.expands or word.tilde:
        raise Unknown(f"no static directory in {word.text!r}")
    return ".", True

