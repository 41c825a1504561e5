"""Validating a tool in a scratch copy of the workspace.

`check_tool` runs each sample (an `Example`, or a plain params dict) in a fresh scratch copy:

1. the params validate against the spec;
2. forward then inverse leaves the state identical: a manifest of every path (kind, mode,
   bytes) plus, in a git repository, HEAD, the refs and the index entries;
3. every path or git item the forward op changed lies inside the declared write footprint;
4. hostile values (shell metacharacters, quotes, newlines, `$(...)`, backticks, `; rm -rf`,
   redirections, option-like words, NUL, ...) put in each string param stay inert: a canary
   outside the workspace is never created, and nothing outside the footprint changes.
   These run on the first sample only: quoting does not depend on the state.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from coagent_cli.core.keys import Key, dir_key, file_key
from coagent_cli.errors import CoagentError
from coagent_cli.tools.execute import invoke, run_bash, undo
from coagent_cli.tools.images import walk
from coagent_cli.tools.render import bind_params, render_footprint
from coagent_cli.tools.spec import Example, ToolSpec

CHECK_ENV = {"GIT_AUTHOR_NAME": "coagent check", "GIT_AUTHOR_EMAIL": "check@coagent.invalid",
             "GIT_COMMITTER_NAME": "coagent check",
             "GIT_COMMITTER_EMAIL": "check@coagent.invalid"}
CANARY_NAME = "coagent-canary"

Manifest = dict[str, tuple[str, ...]]


@dataclass
class CheckReport:
    tool: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runs: int = 0
    hostile_runs: int = 0
    hostile_refused: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def hostile_values(canary: str) -> list[str]:
    """Values that would run `touch canary` (or write it) if a param escaped its quoting."""
    p = f"touch {canary}"
    return [
        f"$({p})", f"`{p}`", f"; {p}", f";{p};", f"&& {p}", f"|| {p}", f"| {p}", f"& {p}",
        f"\n{p}", f"\r{p}", f"x\n{p}\n", f"'; {p}; '", f"\"; {p}; \"", f"'$({p})'",
        f"\"$({p})\"", f"\\$({p})", f"$(touch${{IFS}}{canary})", f">({p})", f"<({p})",
        f"> {canary}", f">{canary}", f">>{canary}", f"2>{canary}", f"a b > {canary}",
        f"${{IFS}}{p}", "$((1+1))", "!!", "*", "~", "-rf", "--help", "-n", "-e", "--",
        "../../../../tmp/coagent-escape", "/etc/passwd", "..", ".", "$HOME", "${HOME}",
        "$'\\x41'", "a\0b", "'", "\"", "\\", "`", "{a,b}", f"$({p})$({p})", f"\";{p};#",
        f"';{p};#", "a\u2028b", f"\t; {p}", f"$( {p} )", f"| sh -c '{p}'",
        f";bash -c \"{p}\"", "%s%s%n", "-i", f"x' && {p} && echo '", f"$(<{canary})", " ", "",
        "A" * 5000, f"'\"'\"'; {p}; '\"'\"'", f"\\'; {p}; \\'", "{path}", "{old_head}",
        "${PATH:0:1}", f"$({p})#", f"; rm -rf {canary}-dir; {p}", f"a; {p}", f"*; {p}",
        f"-- ; {p}", f"--message=$({p})", "\x1b[31mred", f"$'\\n'{p}",
    ]


def check_tool(tool: ToolSpec, workspace: str | Path,
               params_samples: Sequence[Example | Mapping[str, Any]] | None = None, *,
               hostile: bool = True, env: Mapping[str, str] | None = None) -> CheckReport:
    report = CheckReport(tool.name)
    samples = [s if isinstance(s, Example) else Example(params=dict(s))
               for s in (tool.examples if params_samples is None else params_samples)]
    if not samples:
        report.problems.append("no examples to run: add `examples` to the spec")
    full_env = {**CHECK_ENV, **(env or {})}
    with tempfile.TemporaryDirectory(prefix="coagent-check-") as tmp:
        for i, sample in enumerate(samples):
            _check_sample(tool, Path(workspace), Path(tmp) / f"s{i}", sample, i, full_env,
                          report, hostile)
    return report


def _check_sample(tool: ToolSpec, workspace: Path, base: Path, sample: Example, index: int,
                  env: dict[str, str], report: CheckReport, hostile: bool) -> None:
    where = f"example {index}"
    scratch = base / "ws"
    problem = _prepare(workspace, scratch, sample, env)
    if problem:
        report.problems.append(f"{where}: setup failed: {problem}")
        return
    before = manifest(scratch)
    if not _round_trip(tool, scratch, dict(sample.params), before, env, report, where):
        return
    if hostile and index == 0:  # one sample is enough to exercise the quoting
        _check_hostile(tool, workspace, scratch, sample, before, base, env, report, where)


def _prepare(workspace: Path, scratch: Path, sample: Example, env: dict[str, str]) -> str:
    shutil.copytree(workspace, scratch, symlinks=True,
                    ignore=lambda d, names: [".coagent"] if Path(d) == workspace else [])
    for rel, text in sample.files.items():
        path = scratch / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if sample.setup.strip():
        outcome = run_bash(sample.setup, scratch, env=env)
        if outcome.exit_status != 0:
            return outcome.output.strip() or f"exit {outcome.exit_status}"
    return ""


def _round_trip(tool: ToolSpec, scratch: Path, params: dict[str, Any], before: Manifest,
                env: dict[str, str], report: CheckReport, where: str) -> bool:
    report.runs += 1
    try:
        result = invoke(tool, params, scratch, env=env)
    except CoagentError as e:
        report.problems.append(f"{where}: {e}")
        return False
    if not result.ok:
        report.problems.append(f"{where}: forward op failed (exit {result.exit_status}): "
                               f"{result.output.strip()}")
    after = manifest(scratch)
    outside = outside_footprint(diff(before, after), result.writes)
    if outside:
        report.problems.append(f"{where}: wrote outside its declared writes: {outside}")
    return _undo_matches(result, scratch, before, env, report, where)


def _undo_matches(result: Any, scratch: Path, before: Manifest, env: dict[str, str],
                  report: CheckReport, where: str) -> bool:
    if result.tool.is_irreversible:
        report.notes.append(f"{where}: irreversible, round trip not checked")
        return False
    try:
        undo(result, env=env)
    except CoagentError as e:
        report.problems.append(f"{where}: undo failed: {e}")
        return False
    changed = diff(before, manifest(scratch))
    if changed:
        report.problems.append(f"{where}: forward then inverse changed "
                               f"{[str(k) for k in changed]}")
        return False
    return True


def _check_hostile(tool: ToolSpec, workspace: Path, scratch: Path, sample: Example,
                   before: Manifest, base: Path, env: dict[str, str], report: CheckReport,
                   where: str) -> None:
    canary = base / "outside" / CANARY_NAME
    canary.parent.mkdir(parents=True, exist_ok=True)
    strings = [n for n, p in tool.params.items() if p.type in ("string", "array")]
    for name in strings:
        for value in hostile_values(str(canary)):
            params = {**sample.params, name: [value] if tool.params[name].type == "array"
                      else value}
            problem = _one_hostile(tool, scratch, params, before, canary, env, report)
            if tool.is_irreversible and not problem and diff(before, manifest(scratch)):
                problem = "" if _prepare_again(workspace, scratch, sample, env, before) else \
                    "could not rebuild the scratch copy"
            if problem:
                report.problems.append(f"{where}: param {name}={value!r}: {problem}")
                if not _prepare_again(workspace, scratch, sample, env, before):
                    return


def _one_hostile(tool: ToolSpec, scratch: Path, params: dict[str, Any], before: Manifest,
                 canary: Path, env: dict[str, str], report: CheckReport) -> str:
    report.hostile_runs += 1
    try:
        writes = render_footprint(tool, bind_params(tool, params, scratch), scratch)[1]
        result = invoke(tool, params, scratch, env=env)
    except CoagentError:
        report.hostile_refused += 1
        return _canary_problem(canary, scratch)
    outside = outside_footprint(diff(before, manifest(scratch)), writes)
    problem = _canary_problem(canary, scratch) or (
        f"wrote outside its declared writes: {outside}" if outside else "")
    if not problem and not tool.is_irreversible:
        try:
            undo(result, env=env)
        except CoagentError as e:
            return f"undo failed: {e}"
        changed = diff(before, manifest(scratch))
        problem = f"forward then inverse changed {[str(k) for k in changed]}" if changed else ""
    return problem


def _canary_problem(canary: Path, scratch: Path) -> str:
    hits = [str(p) for p in (canary, scratch / CANARY_NAME) if os.path.lexists(p)]
    for hit in hits:  # so the next value is judged on its own
        os.unlink(hit)
    return f"INJECTION: the canary {hits} was created" if hits else ""


def _prepare_again(workspace: Path, scratch: Path, sample: Example, env: dict[str, str],
                   before: Manifest) -> bool:
    shutil.rmtree(scratch, ignore_errors=True)
    return not _prepare(workspace, scratch, sample, env) and manifest(scratch) == before


# --- manifests ---------------------------------------------------------------------------

def manifest(root: Path) -> Manifest:
    """Every path's (kind, mode, content hash), and git state under `git:` names."""
    root = Path(os.path.realpath(root))
    out: Manifest = {}
    for rel in walk(root, "")[1:]:
        out[rel] = _describe(root / rel)
    if (root / ".git").exists():
        out.update(_git_state(root))
    return out


def _describe(path: Path) -> tuple[str, ...]:
    st = os.lstat(path)
    mode = oct(stat.S_IMODE(st.st_mode))
    if stat.S_ISLNK(st.st_mode):
        return ("link", mode, os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return ("dir", mode)
    return ("file", mode, hashlib.sha256(path.read_bytes()).hexdigest())


def _git_state(root: Path) -> Manifest:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")})
        return done.stdout.strip()

    head = root / ".git" / "HEAD"  # "ref: refs/heads/x" or a commit id; refs resolve it below
    out: Manifest = {"git:HEAD": (head.read_text().strip() if head.is_file()
                                  else git("rev-parse", "--symbolic-full-name", "HEAD"),),
                     "git:index": (git("ls-files", "-s"),)}
    for line in git("for-each-ref", "--format=%(refname) %(objectname)").splitlines():
        ref, _, sha = line.partition(" ")
        out["git:ref/" + ref.removeprefix("refs/")] = (sha,)
    return out


def diff(before: Manifest, after: Manifest) -> list[Key]:
    """The keys of everything that differs: file:, dir: (for directories) or git: keys."""
    names = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return [_key_of(n, before.get(n, ()) + after.get(n, ())) for n in names]


def _key_of(name: str, described: tuple[str, ...]) -> Key:
    if name.startswith("git:"):
        return Key.parse(name)
    return dir_key(name) if "dir" in described else file_key(name)


def outside_footprint(changed: list[Key], writes: frozenset[Key]) -> list[str]:
    return [str(c) for c in changed if not any(w.covers(c) for w in writes)]
