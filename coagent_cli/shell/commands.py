"""The table of commands whose footprint we know, and how each reads its arguments.

A handler gets the command name, its argument words (argv[1:]) and the `Place` it runs
in, and returns an `Effect`; it raises `Unknown` whenever the arguments leave it unsure.
Commands missing from the table are raw. Shell builtins that change the working
directory (cd, pushd, popd) are handled by the classifier, not here.

Names are assumed to mean the standard utilities: an alias, a function or a PATH entry
that shadows `cat` is outside what a per-line classifier can see.
"""

from __future__ import annotations

import re
from typing import Callable

from coagent_cli.core.keys import Key
from coagent_cli.shell.footprint import Builder, Effect, Place, Unknown
from coagent_cli.shell.options import Options, longs, parse
from coagent_cli.shell.programs import awk_is_pure, sed_is_pure
from coagent_cli.shell.words import Word

Handler = Callable[[str, list[Word], Place], Effect]

GIT_ALL = Key("git", "")
K8S_ALL = Key("k8s", "")


def _no_footprint(name: str, args: list[Word], place: Place) -> Effect:
    return Builder(place).effect(name)


def _irreversible(what: str) -> Handler:
    def handler(name: str, args: list[Word], place: Place) -> Effect:
        return Effect(kind="irreversible", reason=f"{name} {what}", names=(name,))
    return handler


def _files(spec: Options, *, tree_when: tuple[str, ...] = (), default_cwd: bool = False,
           tree: bool = False) -> Handler:
    """A reader whose operands are all paths (cat, wc, ls, du ...)."""
    def handler(name: str, args: list[Word], place: Place) -> Effect:
        parsed = parse(args, spec)
        b = Builder(place)
        as_tree = tree or parsed.has(*tree_when)
        paths = [w for w in parsed.operands if not (w.static and w.text == "-")]
        for word in paths:
            b.read(word, tree=as_tree)
        if default_cwd and not parsed.operands:
            b.read_cwd()
        return b.effect(name)
    return handler


CAT = Options(flags="AbeEnstTuv", long_flags=longs(
    "number number-nonblank show-all squeeze-blank show-ends show-tabs show-nonprinting"))
LESS = Options(flags="RSNFXiIrn")
HEAD = Options(flags="qvzf", valued="ncs", numeric=True, long_valued=longs(
    "lines bytes sleep-interval pid"), long_flags=longs("quiet silent verbose zero-terminated retry"),
    long_optional=longs("follow"))
WC = Options(flags="clmwL", long_flags=longs("bytes chars lines words max-line-length"))
LS = Options(flags="aAbBcCdfFghHiklLmnNopqQrRsStuUvxX1Z", valued="IwT", long_flags=longs(
    "all almost-all author escape directory dereference human-readable si inode literal "
    "numeric-uid-gid reverse recursive size full-time group-directories-first"),
    long_valued=longs("ignore hide width tabsize block-size"),
    long_optional=longs("color colour sort time format time-style indicator-style classify "
                        "quoting-style"))
TREE = Options(flags="adlfixACDFNpugshvtrUQJ", valued="LPI", long_flags=longs("noreport dirsfirst"),
               long_optional=longs("charset"))
DU = Options(flags="abcDhHklLmPsSx0", valued="dBt", long_flags=longs(
    "all apparent-size bytes total dereference human-readable si summarize one-file-system"),
    long_valued=longs("max-depth block-size threshold exclude"))
STAT = Options(flags="LftZ", valued="c", long_flags=longs("dereference file-system terse"),
               long_valued=longs("format printf"))
FILE = Options(flags="bLhiNkz0E", long_flags=longs("brief mime mime-type mime-encoding dereference "
                                                    "no-dereference keep-going"))
SUM = Options(flags="btz", long_flags=longs("binary text tag zero"))
CUT = Options(flags="snz", valued="bcdf", long_flags=longs("complement only-delimited zero-terminated"),
              long_valued=longs("bytes characters delimiter fields output-delimiter"))
NUMBERED = Options(flags="", valued="bnsvwi", long_valued=longs(
    "body-numbering number-width number-separator"))
REALPATH = Options(flags="eEmLPqsz", long_flags=longs("canonicalize-existing canonicalize-missing "
    "logical physical quiet strip no-symlinks zero"), long_valued=longs("relative-to relative-base"))
READLINK = Options(flags="femnqsvz", long_flags=longs("canonicalize canonicalize-existing "
    "canonicalize-missing no-newline quiet silent verbose zero"))
STRINGS = Options(flags="afw", valued="nte", long_flags=longs("all"))
XXD = Options(flags="pisEru", valued="clgs")


def _grep(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, GREP)
    b = Builder(place)
    for word in parsed.values("-f", "--file", "--exclude-from"):
        b.read(word)
    operands = list(parsed.operands)
    if not parsed.has("-e", "--regexp", "-f", "--file"):
        if not operands:
            raise Unknown(f"{name} without a pattern")
        operands.pop(0)
    recursive = parsed.has("-r", "-R", "--recursive", "--dereference-recursive") or any(
        w.text in ("recurse", "read") and w.static for w in parsed.values("-d", "--directories")
    )
    if recursive and not operands:
        b.read_cwd()
    for word in operands:
        if not (word.static and word.text == "-"):
            b.read(word, tree=recursive)
    return b.effect(name)


GREP = Options(
    flags="EFGPiyvwxclLoqsbHhnTZzaUrRIV", valued="efmABCdD", numeric=True,
    long_flags=longs(
        "extended-regexp fixed-strings basic-regexp perl-regexp ignore-case no-ignore-case "
        "invert-match word-regexp line-regexp count files-with-matches files-without-match "
        "only-matching quiet silent no-messages byte-offset with-filename no-filename "
        "line-number initial-tab null null-data text recursive dereference-recursive "
        "line-buffered"),
    long_valued=longs("regexp file max-count after-context before-context include exclude "
                      "exclude-dir exclude-from label binary-files devices directories"),
    long_optional=longs("color colour context"),
)


def _searcher(spec: Options, pattern_opts: tuple[str, ...]) -> Handler:
    """rg and ag: recursive by default; the first operand is the pattern."""
    def handler(name: str, args: list[Word], place: Place) -> Effect:
        parsed = parse(args, spec)
        b = Builder(place)
        operands = list(parsed.operands)
        lists_files = parsed.has("--files")
        if not parsed.has(*pattern_opts) and not lists_files:
            if not operands:
                raise Unknown(f"{name} without a pattern")
            operands.pop(0)
        for word in operands:
            b.read(word, tree=True)
        if not operands:
            b.read_cwd()
        return b.effect(name)
    return handler


RG = Options(
    flags="iSswxvnNlcFuLHoUPpIa0qz", valued="gtTeABCmMjfd", numeric=False,
    long_flags=longs(
        "hidden no-ignore files files-with-matches files-without-match count count-matches "
        "fixed-strings ignore-case smart-case case-sensitive word-regexp line-regexp "
        "invert-match line-number no-line-number with-filename no-filename only-matching "
        "multiline pcre2 pretty no-heading heading vimgrep column json follow text "
        "null quiet no-messages search-zip trim stats"),
    long_valued=longs("glob iglob type type-not regexp file after-context before-context "
                      "context max-count max-columns threads max-depth max-filesize sort sortr "
                      "type-add encoding"),
    long_optional=longs("color colors"),
)
AG = Options(flags="iswvlLcQuUfHtaz", valued="GABCmg", long_flags=longs(
    "hidden ignore-case smart-case literal files-with-matches count nocolor all-types "
    "follow noheading heading column"), long_valued=longs("ignore ignore-dir depth"))


def _sed(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, SED)
    scripts = parsed.values("-e", "--expression")
    operands = list(parsed.operands)
    if parsed.has("-f", "--file"):
        raise Unknown("sed reads its script from a file")
    if not scripts:
        if not operands:
            raise Unknown("sed without a script")
        scripts = [operands.pop(0)]
    for script in scripts:
        if not script.static or not sed_is_pure(script.text):
            raise Unknown(f"sed script {script.text!r} may write, read or run something")
    in_place = [v for n, v in parsed.opts if n in ("-i", "--in-place")]
    if any(v is not None and v.text for v in in_place) or parsed.has("-s"):
        raise Unknown("sed -i with a backup suffix")
    b = Builder(place)
    for word in operands:
        (b.write if in_place else b.read)(word)
        if in_place:
            b.read(word)
    if in_place and not operands:
        raise Unknown("sed -i without files")
    return b.effect(f"{name} -i" if in_place else name)


SED = Options(flags="nEruzs", valued="ef", long_flags=longs(
    "quiet silent regexp-extended null-data posix debug sandbox unbuffered separate"),
    long_valued=longs("expression file line-length"), long_optional=longs("in-place"))


def _sed_entry(name: str, args: list[Word], place: Place) -> Effect:
    # `-i` takes an optional suffix glued to it (-i.bak): split it off before getopt.
    fixed: list[Word] = []
    for word in args:
        if word.static and word.text.startswith("-") and not word.text.startswith("--") \
                and "i" in word.text[1:] and not _sed_valued_before_i(word.text):
            head, _, suffix = word.text.partition("i")
            if head != "-":
                fixed.append(Word.literal(head))
            fixed.append(Word.literal("--in-place=" + suffix if suffix else "--in-place"))
        else:
            fixed.append(word)
    return _sed(name, fixed, place)


def _sed_valued_before_i(text: str) -> bool:
    before = text[1:text.index("i")]
    return any(c in "efl" for c in before)


def _awk(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, AWK)
    if parsed.has("-f", "--file", "-i", "--include", "-E", "--exec"):
        raise Unknown(f"{name} reads its program from a file")
    operands = list(parsed.operands)
    if not operands:
        raise Unknown(f"{name} without a program")
    program = operands.pop(0)
    if not program.static or not awk_is_pure(program.text):
        raise Unknown(f"{name} program may redirect, pipe or run commands")
    b = Builder(place)
    for word in operands:
        if word.static and ("=" in word.text.split("/")[0] or word.text == "-"):
            continue  # var=value assignments and stdin are not files
        b.read(word)
    return b.effect(name)


AWK = Options(flags="", valued="FvfiE", long_valued=longs("field-separator assign file include exec"))


def _sort(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, SORT)
    b = Builder(place)
    if parsed.has("--files0-from", "-T", "--temporary-directory", "--compress-program"):
        raise Unknown("sort reads a file list or uses a temporary directory")
    for word in parsed.values("-o", "--output"):
        b.write(word)
    for word in parsed.operands:
        if not (word.static and word.text == "-"):
            b.read(word)
    return b.effect(name)


SORT = Options(flags="bdfgiMhnRrVcCmsuz", valued="ktoST", long_flags=longs(
    "ignore-leading-blanks dictionary-order ignore-case general-numeric-sort human-numeric-sort "
    "month-sort numeric-sort random-sort reverse version-sort check merge stable unique "
    "zero-terminated"), long_valued=longs(
    "key field-separator output buffer-size parallel temporary-directory files0-from "
    "compress-program sort random-source"))


def _uniq(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, UNIQ)
    operands = [w for w in parsed.operands]
    if len(operands) > 2:
        raise Unknown("uniq takes at most an input and an output")
    b = Builder(place)
    if operands and not (operands[0].static and operands[0].text == "-"):
        b.read(operands[0])
    if len(operands) == 2:
        b.write(operands[1])
    return b.effect(name)


UNIQ = Options(flags="cdDiuz", valued="fsw", long_flags=longs(
    "count repeated unique ignore-case zero-terminated"),
    long_valued=longs("skip-fields skip-chars check-chars"), long_optional=longs("all-repeated group"))


def _diff(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, DIFF)
    if parsed.has("-X", "--exclude-from", "--from-file", "--to-file"):
        raise Unknown("diff option reads a list or names files indirectly")
    b = Builder(place)
    for word in parsed.operands:
        if not (word.static and word.text == "-"):
            b.read(word, tree=True)  # an operand may be a directory: cover it
    return b.effect(name)


DIFF = Options(flags="qsuNraiwbBEytTpldcen", valued="UCxXFIS", numeric=True, long_flags=longs(
    "brief report-identical-files new-file unidirectional-new-file recursive text ignore-case "
    "ignore-all-space ignore-space-change ignore-blank-lines ignore-tab-expansion "
    "ignore-trailing-space strip-trailing-cr side-by-side suppress-common-lines minimal "
    "expand-tabs initial-tab show-c-function ignore-file-name-case speed-large-files "
    "suppress-blank-empty left-column no-dereference"),
    long_valued=longs("label exclude ignore-matching-lines width starting-file "
                      "show-function-line horizon-lines line-format"),
    long_optional=longs("unified context color palette"))
CMP = Options(flags="blsv", valued="in", long_flags=longs("print-bytes verbose quiet silent"),
              long_valued=longs("ignore-initial bytes"))


def _cmp(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, CMP)
    b = Builder(place)
    for word in parsed.operands[:2]:
        if not (word.static and word.text == "-"):
            b.read(word)
    return b.effect(name)


def _test(name: str, args: list[Word], place: Place) -> Effect:
    """test / [: the operand after a file-test operator is a path read for its metadata."""
    words = args[:-1] if name == "[" and args and args[-1].text == "]" else args
    b = Builder(place)
    for i, word in enumerate(words):
        if word.static and word.text in _TEST_FILE_OPS and i + 1 < len(words):
            b.read(words[i + 1])
        if word.static and word.text in ("-nt", "-ot", "-ef") and 0 < i < len(words) - 1:
            b.read(words[i - 1])
            b.read(words[i + 1])
    return b.effect(name)


_TEST_FILE_OPS = frozenset("-a -b -c -d -e -f -g -h -k -p -r -s -t -u -w -x -G -L -N -O -S".split())


def _date(name: str, args: list[Word], place: Place) -> Effect:
    parsed = parse(args, DATE)
    if parsed.has("-s", "--set", "-f", "--file", "-r", "--reference"):
        raise Unknown("date sets the clock or reads a file")
    if any(not w.text.startswith("+") for w in parsed.operands):
        raise Unknown("date with an operand that sets the clock")
    return Builder(place).effect(name)


DATE = Options(flags="uRI", valued="dsfr", long_flags=longs("utc universal rfc-email debug"),
               long_valued=longs("date set file reference"),
               long_optional=longs("iso-8601 rfc-3339"))


_FIND_FORBIDDEN = frozenset(
    "-delete -exec -execdir -ok -okdir -fprint -fprint0 -fprintf -fls -files0-from -L -follow".split())
_FIND_NULLARY = frozenset(
    "-print -print0 -ls -prune -quit -true -false -empty -executable -readable -writable "
    "-nouser -nogroup -depth -d -mount -xdev -daystart -ignore_readdir_race "
    "-noignore_readdir_race -noleaf -nowarn -warn -not -a -and -o -or ! ( ) , -H -P".split())
_FIND_UNARY = frozenset(
    "-name -iname -path -ipath -wholename -iwholename -regex -iregex -type -xtype -size -mtime "
    "-mmin -atime -amin -ctime -cmin -perm -user -group -uid -gid -links -inum -maxdepth "
    "-mindepth -printf -regextype -used -lname -ilname -fstype -context".split())
_FIND_FILE_ARG = frozenset("-newer -anewer -cnewer -samefile".split())


def _find(name: str, args: list[Word], place: Place) -> Effect:
    """find START... EXPR: reads the trees under its start points; actions that write or run
    commands (-delete, -exec, -fprint ...) and -L (following links out of the tree) are raw."""
    b = Builder(place)
    i = 0
    while i < len(args) and args[i].static and args[i].text in ("-H", "-P"):
        i += 1
    starts = []
    while i < len(args) and not (args[i].static and (args[i].text.startswith("-")
                                                     or args[i].text in ("(", "!", ","))):
        starts.append(args[i])
        i += 1
    for word in starts:
        b.read(word, tree=True)
    if not starts:
        b.read_cwd()
    _find_expression(args[i:], b)
    return b.effect(name)


def _find_expression(args: list[Word], b: Builder) -> None:
    i = 0
    while i < len(args):
        token = args[i]
        if not token.static:
            raise Unknown(f"find expression has an expanded operator {token.text!r}")
        op = token.text
        if op in _FIND_FORBIDDEN:
            raise Unknown(f"find {op} writes, runs a command or follows links")
        if op in _FIND_NULLARY:
            i += 1
        elif op in _FIND_UNARY or re.fullmatch(r"-newer[abcm]t", op):
            if i + 1 >= len(args):
                raise Unknown(f"find {op} lacks its argument")
            i += 2
        elif op in _FIND_FILE_ARG or re.fullmatch(r"-newer[abcm][abcm]", op):
            if i + 1 >= len(args):
                raise Unknown(f"find {op} lacks its argument")
            b.read(args[i + 1])
            i += 2
        else:
            raise Unknown(f"find {op} is not a known predicate")


def _no_args(name: str, args: list[Word], place: Place) -> Effect:
    if args:
        raise Unknown(f"{name} with arguments may change something")
    return Builder(place).effect(name)


def versions_only(name: str, args: list[Word], place: Place) -> Effect:
    """A toolchain asked only for its version reads nothing; any other use is raw."""
    if [w.text for w in args] in (["--version"], ["-V"], ["version"]) and all(w.static for w in args):
        return Builder(place).effect(name)
    raise Unknown(f"{name} is not a known command")


COMMANDS: dict[str, Handler] = {
    "cat": _files(CAT), "tac": _files(CAT), "nl": _files(NUMBERED),
    "less": _files(LESS), "more": _files(LESS),
    "head": _files(HEAD), "tail": _files(HEAD),
    "wc": _files(WC),
    "ls": _files(LS, tree=True, default_cwd=True),
    "tree": _files(TREE, tree=True, default_cwd=True),
    "du": _files(DU, tree=True, default_cwd=True),
    "stat": _files(STAT), "file": _files(FILE),
    "md5sum": _files(SUM), "sha1sum": _files(SUM), "sha256sum": _files(SUM),
    "sha512sum": _files(SUM), "b2sum": _files(SUM), "cksum": _files(Options()),
    "cut": _files(CUT), "realpath": _files(REALPATH), "readlink": _files(READLINK),
    "strings": _files(STRINGS), "xxd": _files(XXD, tree=False), "od": _files(Options(
        flags="bcdfiloxsv", valued="AjNtSw")), "hexdump": _files(Options(flags="bcCdoxv", valued="ns")),
    "grep": _grep, "egrep": _grep, "fgrep": _grep,
    "rg": _searcher(RG, ("-e", "--regexp", "-f", "--file")),
    "ag": _searcher(AG, ()),
    "sed": _sed_entry, "awk": _awk, "gawk": _awk, "mawk": _awk,
    "sort": _sort, "uniq": _uniq, "diff": _diff, "cmp": _cmp,
    "find": _find, "test": _test, "[": _test, "date": _date, "hostname": _no_args, "clear": _no_args,
}

for _name in ("echo printf true false pwd whoami id uname hostname nproc basename dirname "
              "sleep seq expr : exit return set shopt which type tr yes printenv locale "
              "dirs wait jobs read").split():
    COMMANDS[_name] = _no_footprint

for _name in ("python python3 node npm npx pip pip3 make gcc cc go cargo rustc java ruby perl "
              "pytest uv docker bash sh").split():
    COMMANDS[_name] = versions_only

for _name in ("curl wget ssh sftp ftp telnet nc ncat mail sendmail mutt gh aws gcloud az "
              "terraform helm http https twine").split():
    COMMANDS[_name] = _irreversible("talks to the network")
