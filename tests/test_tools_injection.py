"""Hostile params stay inert, and `check_tool` catches tools that are not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from coagent_cli.errors import CoagentError
from coagent_cli.tools import ToolLibrary, invoke, load_spec_text, undo
from coagent_cli.tools.check import check_tool, diff, hostile_values, manifest, outside_footprint

LIBRARY = ToolLibrary.for_workspace("/nonexistent-ws", user_dir=Path("/nonexistent-user"))
COMMAND_TOOLS = sorted(s.name for s in LIBRARY.tools() if s.command is not None)
ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@example.com"}


def test_there_are_enough_hostile_values() -> None:
    values = hostile_values("/tmp/c")
    assert len(set(values)) >= 60


@pytest.mark.parametrize("name", sorted(s.name for s in LIBRARY.tools()))
def test_every_builtin_passes_its_own_check(tmp_path: Path, name: str) -> None:
    spec = LIBRARY.get(name)
    report = check_tool(spec, tmp_path)
    assert report.ok, "\n".join(report.problems)
    strings = [p for p in spec.params.values() if p.type == "string"]
    assert report.hostile_runs >= 50 * len(strings)
    assert report.runs == len(spec.examples) >= 1


# Each command tool with a sample whose forward op really runs, and the param to poison.
SAMPLES = {
    "read_file": ({"a.txt": "x"}, {"path": "a.txt"}, "path"),
    "list_dir": ({"a.txt": "x"}, {"path": "."}, "path"),
    "search": ({"a.txt": "x"}, {"pattern": "x", "path": "."}, "pattern"),
    "make_dir": ({}, {"path": "d"}, "path"),
    "delete_file": ({"a.txt": "x"}, {"path": "a.txt"}, "path"),
    "move_file": ({"a.txt": "x"}, {"src": "a.txt", "dst": "b.txt"}, "dst"),
    "git_add": ({"a.txt": "x"}, {"path": "a.txt"}, "path"),
    "git_commit": ({"a.txt": "x"}, {"message": "m"}, "message"),
    "git_create_branch": ({}, {"name": "b"}, "name"),
    "git_delete_branch": ({}, {"name": "gone"}, "name"),
    "git_checkout_branch": ({}, {"branch": "other"}, "branch"),
}


def test_samples_cover_every_command_tool() -> None:
    assert sorted(SAMPLES) == COMMAND_TOOLS


def _repo(root: Path, files: dict[str, str]) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                       env={**ENV, "PATH": "/usr/bin:/bin", "HOME": str(root)})

    git("init", "-q", "-b", "main")
    git("commit", "-q", "--allow-empty", "-m", "init")
    git("branch", "gone")
    git("branch", "other")
    for rel, text in files.items():
        (root / rel).write_text(text)
    git("add", "-A")


@pytest.mark.parametrize("name", COMMAND_TOOLS)
def test_hostile_values_stay_inert(tmp_path: Path, name: str) -> None:
    files, sample, poisoned = SAMPLES[name]
    root = tmp_path / "ws"
    root.mkdir()
    _repo(root, files)
    canary = tmp_path / "CANARY"
    before = manifest(root)
    spec = LIBRARY.get(name)
    values = hostile_values(str(canary))
    assert len(values) >= 50
    for value in values:
        try:
            result = invoke(spec, {**sample, poisoned: value}, root, env=ENV)
        except CoagentError:
            continue  # refused before running: inert
        assert not canary.exists() and not (root / "coagent-canary").exists(), repr(value)
        changed = diff(before, manifest(root))
        assert not outside_footprint(changed, result.writes), (value, changed)
        undo(result, env=ENV)
        assert manifest(root) == before, repr(value)


CHEATS = {
    "eval": ("command: eval echo {x}\n", "INJECTION"),
    "bash_c": ("command: bash -c {x}\n", "INJECTION"),
    "sneaky": ("command: echo {x} > out.txt; echo more > other.txt\nwrites: ['file:out.txt']\n",
               "outside its declared writes: ['file:other.txt']"),
    "bad_inverse": ("command: echo {x} >> out.txt\nwrites: ['file:out.txt']\ninverse: 'true'\n",
                    "forward then inverse changed"),
    "failing": ("command: 'false'\n", "forward op failed"),
}


@pytest.mark.parametrize("kind", sorted(CHEATS))
def test_check_catches_unsafe_or_unfaithful_tools(tmp_path: Path, kind: str) -> None:
    body, words = CHEATS[kind]
    text = ("name: cheat\ndescription: d\nparams: {x: {type: string}}\n" + body
            + "examples: [{params: {x: hi}}]\n")
    (spec,) = load_spec_text(text)
    report = check_tool(spec, tmp_path)
    assert not report.ok and any(words in p for p in report.problems), report.problems


def test_check_without_examples_says_so(tmp_path: Path) -> None:
    (spec,) = load_spec_text("name: t\ndescription: d\ncommand: 'true'\n")
    report = check_tool(spec, tmp_path)
    assert not report.ok and "no examples" in report.problems[0]
    assert check_tool(spec, tmp_path, [{}]).ok
