"""A getopt for the known commands: which words are options, which option values, which operands.

Each known command lists the options it accepts (`Options`). An option we do not list
makes the command unknown: guessing that an unlisted option takes no value could turn its
value into a path, or miss that the option writes (`sort -o`, `git log --output`).
GNU-style permutation is the default: options may follow operands until `--`.
A word that may expand to an option (`$x`, `"$x"`) is unknown; a glob such as `*.py` is
taken as operands, on the assumption that no file name in the tree starts with `-`.
"""

from __future__ import annotations

from dataclasses import dataclass

from coagent_cli.shell.footprint import Unknown
from coagent_cli.shell.words import Word

Opt = tuple[str, Word | None]


@dataclass(frozen=True, slots=True)
class Options:
    flags: str = ""                         # short options without a value
    valued: str = ""                        # short options that take a value
    long_flags: frozenset[str] = frozenset()
    long_valued: frozenset[str] = frozenset()
    long_optional: frozenset[str] = frozenset()  # --name or --name=value, never a separate word
    numeric: bool = False                   # -5 (head, grep context) is a flag
    permute: bool = True                    # options may follow operands


def longs(text: str) -> frozenset[str]:
    return frozenset(text.split())


@dataclass(frozen=True, slots=True)
class Parsed:
    opts: tuple[Opt, ...]
    operands: tuple[Word, ...]

    def has(self, *names: str) -> bool:
        return any(name in names for name, _ in self.opts)

    def values(self, *names: str) -> list[Word]:
        return [value for name, value in self.opts if name in names and value is not None]


def parse(args: list[Word], spec: Options) -> Parsed:
    opts: list[Opt] = []
    operands: list[Word] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word.static and word.text == "--":
            operands.extend(args[i + 1:])
            break
        if not spec.permute and operands:
            operands.append(word)
        elif word.is_option:
            i = _option(args, i, spec, opts)
            continue
        elif not word.static and not word.prefix and not word.procsub and (word.expands or word.tilde):
            raise Unknown(f"{word.text!r} may expand to an option")
        elif word.prefix.startswith("-") and word.prefix != "-":
            raise Unknown(f"option {word.text!r} contains an expansion")
        else:
            operands.append(word)
        i += 1
    return Parsed(tuple(opts), tuple(operands))


def _option(args: list[Word], i: int, spec: Options, opts: list[Opt]) -> int:
    text = args[i].text
    if text.startswith("--"):
        return _long(args, i, spec, opts)
    j = 1
    while j < len(text):
        c = text[j]
        if spec.numeric and c.isdigit():
            opts.append(("-#", Word.literal(text[j:])))
            return i + 1
        if c in spec.flags:
            opts.append(("-" + c, None))
            j += 1
            continue
        if c not in spec.valued:
            raise Unknown(f"unknown option -{c}")
        if j + 1 < len(text):
            opts.append(("-" + c, Word.literal(text[j + 1:])))
            return i + 1
        return _take_value("-" + c, args, i, opts)
    return i + 1


def _long(args: list[Word], i: int, spec: Options, opts: list[Opt]) -> int:
    name, eq, value = args[i].text.partition("=")
    bare = name[2:]
    if eq and (bare in spec.long_valued or bare in spec.long_optional):
        opts.append((name, Word.literal(value)))
        return i + 1
    if not eq and bare in spec.long_flags | spec.long_optional:
        opts.append((name, None))
        return i + 1
    if not eq and bare in spec.long_valued:
        return _take_value(name, args, i, opts)
    raise Unknown(f"unknown option {name}")


def _take_value(name: str, args: list[Word], i: int, opts: list[Opt]) -> int:
    if i + 1 >= len(args):
        raise Unknown(f"option {name} lacks its value")
    value = args[i + 1]
    if value.splits:
        raise Unknown(f"value of {name} may split")
    opts.append((name, value))
    return i + 2
