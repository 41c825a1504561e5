"""Is a sed script or an awk program free of side effects beyond its stated files?

sed can write (`w file`, `s/a/b/w file`), read other files (`r`, `R`) and run commands (`e`,
`s///e`); awk can redirect (`print > "f"`), pipe (`| "cmd"`), run (`system()`) and read
(`getline < "f"`). We accept only scripts we can read through and that do none of these;
anything else is treated as unknown by the caller.
"""

from __future__ import annotations

import re

_AWK_EFFECTS = re.compile(r"[>|@]|\bsystem\b|\bgetline\b")
_SED_SIMPLE = set("dDpPnNgGhHxlzFv=")
_SED_TEXT = set("aic")
_SED_LABELLED = set("btT:")
_SED_S_FLAGS = set("gpiImM0123456789")


def awk_is_pure(program: str) -> bool:
    return _AWK_EFFECTS.search(program) is None


def sed_is_pure(script: str) -> bool:
    """True when every command of the script only edits the stream."""
    try:
        _SedReader(script).read_all()
    except _Impure:
        return False
    return True


class _Impure(Exception):
    """The script writes, reads other files, runs commands, or we cannot read it."""


class _SedReader:
    def __init__(self, script: str) -> None:
        self.s = script
        self.i = 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def take(self) -> str:
        if self.i >= len(self.s):
            raise _Impure
        c = self.s[self.i]
        self.i += 1
        return c

    def read_all(self) -> None:
        while True:
            self._skip(" \t\n;")
            if self.i >= len(self.s):
                return
            self._address()
            self._command()

    def _skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.i += 1

    def _address(self) -> None:
        if not self._one_address():
            return
        self._skip(" \t")
        if self.peek() == ",":
            self.i += 1
            self._skip(" \t")
            if self.peek() in "+~":
                self.i += 1
            if not self._one_address():
                raise _Impure
        self._skip(" \t")
        if self.peek() == "!":
            self.i += 1
            self._skip(" \t")

    def _one_address(self) -> bool:
        c = self.peek()
        if c.isdigit():
            while self.peek().isdigit() or self.peek() == "~":
                self.i += 1
            return True
        if c == "$":
            self.i += 1
            return True
        if c in ("/", "\\"):
            if c == "\\":
                self.i += 1
            delim = self.take()
            self._until(delim)
            while self.peek() in ("I", "M"):
                self.i += 1
            return True
        return False

    def _until(self, delim: str) -> None:
        while True:
            c = self.take()
            if c == "\\":
                self.take()
            elif c == delim:
                return
            elif c == "\n":
                raise _Impure

    def _command(self) -> None:
        c = self.take()
        if c in "{}" or c in _SED_SIMPLE:
            return
        if c in "qQ":
            self._skip(" \t0123456789")
        elif c == "#":
            self._to_line_end()
        elif c in _SED_LABELLED:
            self._label()
        elif c in _SED_TEXT:
            self._text()
        elif c == "s":
            self._substitute()
        elif c == "y":
            delim = self.take()
            self._until(delim)
            self._until(delim)
        else:
            raise _Impure

    def _to_line_end(self) -> None:
        while self.peek() and self.peek() != "\n":
            self.i += 1

    def _label(self) -> None:
        while self.peek() and self.peek() not in ";\n}":
            self.i += 1

    def _text(self) -> None:
        while self.peek():
            c = self.take()
            if c == "\\":
                self.take()
            elif c == "\n":
                return

    def _substitute(self) -> None:
        delim = self.take()
        if delim in "\n\\":
            raise _Impure
        self._until(delim)
        self._until(delim)
        while self.peek() and self.peek() not in " \t\n;}":
            if self.take() not in _SED_S_FLAGS:
                raise _Impure
