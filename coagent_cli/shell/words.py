"""What one shell word will become, read from its source text.

bashlex gives each word a position in the line; its own unquoted text is lossy (it keeps
some quotes and drops others), so we re-read the source slice ourselves. We do not expand
anything. We only learn what is certain about the word:

    text      the word after quote removal, expansions left in place
    static    no expansion, no glob, no tilde: `text` is exactly the argument
    exact     like static, but a leading `~` is allowed (it names one path once HOME is known)
    prefix    the literal text before the first expansion or glob character
    splits    an unquoted expansion: the word may become several words (or none)
    glob      an unquoted glob or brace character: the word names a set of paths
    expands   contains a parameter, command or ANSI-C expansion (quoted or not)
    tilde     starts with an unquoted `~`
    param     the whole word is one parameter ($f, ${f}, "$f"): its name, else None
    quoted    for `param`: the expansion was inside double quotes
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM_WORD = re.compile(r'^(")?\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))(?(1)")$')
_GLOB_CHARS = "*?["
_EXTGLOB_LEADS = "@+!"


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    static: bool
    prefix: str
    exact: bool = False
    expands: bool = False
    splits: bool = False
    glob: bool = False
    tilde: bool = False
    param: str | None = None
    quoted: bool = False
    procsub: bool = False

    @staticmethod
    def literal(text: str) -> "Word":
        """A word whose value is known exactly (e.g. an item bound by a for loop)."""
        return Word(text=text, static=True, prefix=text, exact=True)

    @property
    def is_option(self) -> bool:
        # An unquoted glob in an option (--include=*.py) is kept as typed: it would only
        # expand if a file name started with the option's spelling.
        return (self.static or (self.glob and not self.expands and not self.tilde)) \
            and self.text.startswith("-") and self.text != "-"


def read_word(source: str) -> Word:
    """Analyse the source text of one word (quotes and all, as typed)."""
    param = _PARAM_WORD.match(source)
    if param:
        name = param.group(2) or param.group(3)
        return Word(text=source, static=False, prefix="", expands=True,
                    splits=not param.group(1),
                    param=name, quoted=bool(param.group(1)))
    if source.startswith(("<(", ">(")):
        return Word(text=source, static=False, prefix="", expands=True, procsub=True)
    return _Scanner(source).scan()


class _Scanner:
    """One pass over a word's source, tracking quotes (see the module docstring)."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.i = 0
        self.out: list[str] = []
        self.prefix: str | None = None
        self.splits = False
        self.glob = False
        self.dynamic = False
        self.tilde = source.startswith("~")

    def scan(self) -> Word:
        while self.i < len(self.src):
            self._step()
        text = "".join(self.out)
        prefix = text if self.prefix is None else self.prefix
        exact = not (self.dynamic or self.glob)
        return Word(text=text, static=exact and not self.tilde, prefix=prefix, exact=exact,
                    expands=self.dynamic, splits=self.splits,
                    glob=self.glob, tilde=self.tilde)

    def _mark(self, *, glob: bool = False, splits: bool = False) -> None:
        if self.prefix is None:
            self.prefix = "".join(self.out)
        self.glob |= glob
        self.splits |= splits
        self.dynamic |= not glob

    def _step(self) -> None:
        c = self.src[self.i]
        nxt = self.src[self.i + 1] if self.i + 1 < len(self.src) else ""
        if c == "\\":
            self.out.append(nxt)
            self.i += 2
        elif c == "'":
            self._single_quoted()
        elif c == '"':
            self._double_quoted()
        elif c == "$" and nxt == "'":
            self._mark()
            self._single_quoted(start=self.i + 1)
        elif c == "$" and (nxt in "{(@*#?-$!" or nxt.isalnum() or nxt == "_"):
            self._mark(splits=True)
            self.out.append(c)
            self.i += 1
        elif c == "`":
            self._mark(splits=True)
            self.out.append(c)
            self.i += 1
        elif c in _GLOB_CHARS or c == "{" or (c in _EXTGLOB_LEADS and nxt == "("):
            self._mark(glob=True)
            self.out.append(c)
            self.i += 1
        else:
            self.out.append(c)
            self.i += 1

    def _single_quoted(self, start: int | None = None) -> None:
        begin = (self.i if start is None else start) + 1
        end = self.src.find("'", begin)
        end = len(self.src) if end < 0 else end
        self.out.append(self.src[begin:end])
        self.i = end + 1

    def _double_quoted(self) -> None:
        self.i += 1
        while self.i < len(self.src) and self.src[self.i] != '"':
            c = self.src[self.i]
            nxt = self.src[self.i + 1] if self.i + 1 < len(self.src) else ""
            if c == "\\" and nxt in '$`"\\\n':
                self.out.append(nxt)
                self.i += 2
                continue
            if c == "`" or (c == "$" and (nxt in "{(@*#?-$!" or nxt.isalnum() or nxt == "_")):
                self._mark()
            self.out.append(c)
            self.i += 1
        self.i += 1
