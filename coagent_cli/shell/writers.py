"""Known commands that change files: cp, mv, rm, rmdir, mkdir, touch, ln -s, tee, chmod.

The classifier does not look at the file system, so a destination that may be an existing
directory (cp, mv, ln) is written as a `dir:` key, which covers both the file and anything
placed inside it. Backup options (`-b`, `--backup`) write siblings we do not model: unknown.
"""

from __future__ import annotations

from coagent_cli.shell.commands import Handler
from coagent_cli.shell.footprint import Builder, Effect, Place, Unknown
from coagent_cli.shell.options import Options, Parsed, longs, parse
from coagent_cli.shell.words import Word

_BACKUP = ("-b", "--backup", "-S", "--suffix")

CP = Options(flags="aRrfinpuvlsLPHdTxZ", valued="tS", long_flags=longs(
    "archive recursive force interactive no-clobber parents verbose link symbolic-link "
    "dereference no-dereference one-file-system remove-destination strip-trailing-slashes "
    "attributes-only no-target-directory debug"), long_valued=longs("target-directory suffix sparse"),
    long_optional=longs("preserve no-preserve update backup reflink"))
MV = Options(flags="finuvTZ", valued="tS", long_flags=longs(
    "force interactive no-clobber verbose strip-trailing-slashes no-target-directory debug "
    "no-copy"), long_valued=longs("target-directory suffix"), long_optional=longs("update backup"))
RM = Options(flags="rRfidvI", long_flags=longs(
    "recursive force dir verbose one-file-system no-preserve-root"),
    long_optional=longs("interactive preserve-root"))
MKDIR = Options(flags="pv", valued="m", long_flags=longs("parents verbose"), long_valued=longs("mode"))
RMDIR = Options(flags="v", long_flags=longs("verbose ignore-fail-on-non-empty"))
TOUCH = Options(flags="acmfh", valued="dtr", long_flags=longs("no-create no-dereference"),
                long_valued=longs("date reference time"))
LN = Options(flags="sfnrvTiLP", valued="tS", long_flags=longs(
    "symbolic force no-dereference relative verbose no-target-directory interactive logical "
    "physical"), long_valued=longs("target-directory suffix"), long_optional=longs("backup"))
TEE = Options(flags="aip", long_flags=longs("append ignore-interrupts"), long_optional=longs("output-error"))
CHMOD = Options(flags="Rcfv", long_flags=longs("recursive changes silent quiet verbose "
                                               "no-preserve-root preserve-root"),
                long_valued=longs("reference"))


def _operands(parsed: Parsed) -> list[Word]:
    return [w for w in parsed.operands if not (w.static and w.text == "-")]


def _split_target(parsed: Parsed, name: str) -> tuple[list[Word], Word]:
    """Sources and the destination of cp/mv/ln, honouring -t DIR."""
    operands = _operands(parsed)
    targets = parsed.values("-t", "--target-directory")
    if len(targets) > 1:
        raise Unknown(f"{name} with several target directories")
    if targets:
        return operands, targets[0]
    if len(operands) < 2:
        raise Unknown(f"{name} needs a source and a destination")
    return operands[:-1], operands[-1]


def _cp(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, CP)
    if parsed.has(*_BACKUP) or parsed.has("-l", "--link"):
        raise Unknown("cp with backups or hard links")
    sources, dest = _split_target(parsed, name)
    tree = parsed.has("-r", "-R", "-a", "--recursive", "--archive")
    b = Builder(place)
    for word in sources:
        b.read(word, tree=tree)
    b.write(dest, tree=True)
    return b.effect(name)


def _mv(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, MV)
    if parsed.has(*_BACKUP):
        raise Unknown("mv with backups")
    sources, dest = _split_target(parsed, name)
    b = Builder(place)
    for word in sources:
        b.read(word, tree=True)
        b.write(word, tree=True)
    b.write(dest, tree=True)
    return b.effect(name)


def _rm(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, RM)
    tree = parsed.has("-r", "-R", "--recursive", "-d", "--dir")
    b = Builder(place)
    for word in _operands(parsed):
        b.write(word, tree=tree)
    return b.effect(name)


def _dirs(spec: Options) -> Handler:
    def handler(name: str, args: list[Word], place: Place) -> Effect:
        parsed = parse(args, spec)
        b = Builder(place)
        for word in _operands(parsed):
            b.write(word, tree=True)
        return b.effect(name)
    return handler


def _touch(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, TOUCH)
    b = Builder(place)
    for word in parsed.values("-r", "--reference"):
        b.read(word)
    for word in _operands(parsed):
        b.write(word)
    return b.effect(name)


def _ln(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, LN)
    if not parsed.has("-s", "--symbolic") or parsed.has(*_BACKUP):
        raise Unknown("ln without -s (a hard link aliases a file) or with backups")
    operands = _operands(parsed)
    b = Builder(place)
    if len(operands) == 1 and not parsed.has("-t", "--target-directory"):
        target = operands[0]
        if not target.static:
            raise Unknown("ln -s with one dynamic operand")
        b.write(Word.literal(target.text.rstrip("/").rsplit("/", 1)[-1] or "."), tree=True)
        return b.effect("ln -s")
    _, dest = _split_target(parsed, name)
    b.write(dest, tree=True)
    return b.effect("ln -s")


def _tee(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, TEE)
    b = Builder(place)
    for word in _operands(parsed):
        b.write(word)
    return b.effect(name)


def _chmod(name: str, args: list[Word], place: Place) -> Effect:
    # A mode such as -x looks like an option: take the first word that is not a known
    # option as the mode, then parse the rest.
    known = {"-R", "-c", "-f", "-v", "--recursive", "--changes", "--silent", "--quiet", "--verbose"}
    rest = list(args)
    flags = []
    while rest and rest[0].static and rest[0].text in known:
        flags.append(rest.pop(0))
    if not rest or not rest[0].static or rest[0].text.startswith("--"):
        raise Unknown("chmod without a plain mode")
    parsed = parse(flags + rest[1:], CHMOD)
    tree = parsed.has("-R", "--recursive")
    b = Builder(place)
    for word in _operands(parsed):
        b.write(word, tree=tree)
    return b.effect(name)


WRITERS: dict[str, Handler] = {
    "cp": _cp, "mv": _mv, "rm": _rm, "mkdir": _dirs(MKDIR), "rmdir": _dirs(RMDIR),
    "touch": _touch, "ln": _ln, "tee": _tee, "chmod": _chmod,
}
