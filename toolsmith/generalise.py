"""From recurring raw command lines to a declared tool spec. Pure: no I/O.

A raw command (footprint `*`: the classifier could not say what it touches) serializes
every agent behind it. When agents run the same kind of raw command again and again, the
ToolSmith writes a tool for it, so that the next such line is lifted onto the tool (its
`match` pattern) with a precise footprint.

Generalising one group of samples (same program, same number of words, run at the
workspace root, exit 0):

    words      equal in every sample -> literal; differing -> a param. A differing
               option-like word (`-x`) is not generalised: the matcher never binds one.
    params     `path`, `path2`... when every value names a workspace path (format: path:
               confined to the workspace, rendered relative); `value`, `value2`... else
    writes     every path a sample wrote must be explained, the same way in every sample
               that wrote it: the value of a path param (`file:{path}`), below it
               (`dir:{path}`), or a constant path (`file:x`, or the directory all such
               writes share, `dir:d`). Anything else: no tool (the reason is kept)
    reads      the path params and constant path words that name existing files (the
               program and its inputs), and the writes (a rewrite reads what it rewrites)
    inverse    snapshot: before-images of the write keys are restored

The result is a candidate; `toolsmith.smith` validates it in a scratch copy before it is
registered. Reads a program makes of files its arguments do not name cannot be seen
here (there is no read tracing): such a tool under-declares its reads.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterable

__all__ = ["Candidate", "Sample", "generalise", "group"]

MIN_COUNT = 3
_NAME_CLEAN = re.compile(r"[^A-Za-z0-9_]+")


@dataclass(frozen=True)
class Sample:
    """One raw command line an agent ran, and what it wrote."""

    op_id: int
    agent: str
    line: str
    argv: tuple[str, ...]
    writes: frozenset[str]              # workspace-relative paths it changed
    existing: frozenset[str] = frozenset()  # argv words that named existing workspace paths
    dirs: frozenset[str] = frozenset()      # those of them that were directories


@dataclass
class Candidate:
    name: str
    samples: list[Sample]
    spec: dict[str, Any] | None = None   # the tool spec (YAML-ready), None when not generalisable
    problem: str | None = None           # why not
    params: list[dict[str, Any]] = field(default_factory=list)  # each sample's params

    @property
    def lines(self) -> list[str]:
        return [s.line for s in self.samples]


def group(samples: Iterable[Sample]) -> dict[tuple[str, int], list[Sample]]:
    """Samples by (program, number of words)."""
    groups: dict[tuple[str, int], list[Sample]] = {}
    for s in samples:
        if s.argv:
            groups.setdefault((s.argv[0], len(s.argv)), []).append(s)
    return groups


def generalise(samples: Iterable[Sample], *, min_count: int = MIN_COUNT,
               taken: Iterable[str] = ()) -> list[Candidate]:
    """Candidates for every group of at least `min_count` samples with distinct lines."""
    names = set(taken)
    out = []
    for _, members in sorted(group(samples).items()):
        if len({m.line for m in members}) < min_count:
            continue
        name = _name(members, names)
        names.add(name)
        out.append(_candidate(name, members))
    return out


def _candidate(name: str, samples: list[Sample]) -> Candidate:
    cand = Candidate(name, samples)
    width = len(samples[0].argv)
    varying = [i for i in range(width) if len({s.argv[i] for s in samples}) > 1]
    if not varying:
        cand.problem = "the lines do not differ: nothing to generalise"
        return cand
    if 0 in varying:
        cand.problem = "the program differs"
        return cand
    if any(s.argv[i].startswith("-") for s in samples for i in varying):
        cand.problem = "an option-like word differs between the lines"
        return cand
    params = _params(samples, varying)
    writes = _writes(samples, params)
    if isinstance(writes, str):
        cand.problem = writes
        return cand
    cand.params = [{p: s.argv[i] for i, p in params.items()} for s in samples]
    cand.spec = _spec(name, samples, params, writes)
    return cand


def _params(samples: list[Sample], varying: list[int]) -> dict[int, str]:
    """argv position -> param name."""
    names: dict[int, str] = {}
    counts = {"path": 0, "value": 0}
    for i in varying:
        kind = "path" if all(s.argv[i] in s.existing or s.argv[i] in s.writes or _looks_like_path(s.argv[i])
                             for s in samples) else "value"
        counts[kind] += 1
        names[i] = kind if counts[kind] == 1 else f"{kind}{counts[kind]}"
    return names


def _looks_like_path(word: str) -> bool:
    return "/" in word.strip("/") or bool(re.fullmatch(r"[\w.-]+\.[A-Za-z0-9]{1,8}", word))


def _writes(samples: list[Sample], params: dict[int, str]) -> list[str] | str:
    """The write footprint templates, or why the writes cannot be explained."""
    keys: set[str] = set()
    loose: list[set[str]] = []  # per sample: writes no param explains
    for s in samples:
        left = set()
        for path in s.writes:
            key = _explained(path, s, params)
            if key is None:
                left.add(path)
            else:
                keys.add(key)
        loose.append(left)
    constant = _constant(loose)
    if isinstance(constant, str):
        return constant
    return sorted(keys | constant)


def _explained(path: str, s: Sample, params: dict[int, str]) -> str | None:
    for i, name in params.items():
        value = _norm(s.argv[i])
        if path == value:
            return f"file:{{{name}}}"
        if value and path.startswith(value + "/"):
            return f"dir:{{{name}}}"
    return None


def _constant(loose: list[set[str]]) -> set[str] | str:
    """Writes no param explains must be the same files in every sample that has any, or
    lie under one directory they share."""
    every = [w for w in loose if w]
    if not every:
        return set()
    if all(w == every[0] for w in every) and len(every[0]) <= 4:
        return {f"file:{p}" for p in every[0]}
    common = posixpath.commonpath([p for w in every for p in w])
    if common and not common.startswith((".git", ".coagent")):
        return {f"dir:{common}"}
    example = sorted(every[0])[0]
    return f"it writes {example}, which neither its arguments nor a shared directory explain"


def _spec(name: str, samples: list[Sample], params: dict[int, str], writes: list[str]) -> dict[str, Any]:
    argv = samples[0].argv
    words = [f"{{{params[i]}}}" if i in params else shlex.quote(w) for i, w in enumerate(argv)]
    pattern = [f"{{{params[i]}}}" if i in params else shlex.quote(w) for i, w in enumerate(argv)]
    reads = set(writes)
    for i, p in params.items():
        if all(s.argv[i] in s.existing for s in samples):
            kind = "dir" if all(s.argv[i] in s.dirs for s in samples) else "file"
            reads.add(f"{kind}:{{{p}}}")
    for i, w in enumerate(argv):
        if i not in params and all(w in s.existing and w not in s.dirs for s in samples):
            reads.add(f"file:{_norm(w)}")
    shown = "\n".join(f"  {s.line}" for s in samples[:3])
    return {
        "name": name,
        "description": (f"Runs `{' '.join(words)}` (a tool the ToolSmith generalised from "
                        f"{len(samples)} raw command lines, e.g.\n{shown}\n)."),
        "params": {p: ({"type": "string", "format": "path", "description": "a workspace path"}
                       if p.startswith("path") else {"type": "string"})
                   for p in params.values()},
        "command": " ".join(words),
        "reads": sorted(reads),
        "writes": writes,
        "inverse": "snapshot",
        "match": [" ".join(pattern)],
    }


def _norm(word: str) -> str:
    path = posixpath.normpath(word)
    return "" if path == "." else path.removeprefix("./")


def _name(samples: list[Sample], taken: set[str]) -> str:
    argv = samples[0].argv
    program = posixpath.basename(argv[0])
    fixed = [w for i, w in enumerate(argv[1:], 1) if all(s.argv[i] == w for s in samples)
             and not w.startswith("-")]
    if program in ("python", "python3", "bash", "sh", "node", "ruby", "perl") and fixed:
        program = posixpath.basename(fixed[0])  # the script, not its interpreter
    base = _NAME_CLEAN.sub("_", f"ts_{program}").strip("_").lower()[:56] or "ts_tool"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name
