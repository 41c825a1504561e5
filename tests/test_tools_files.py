"""The built-in file tools on real directories: round trips, redo on a changed base, and
property tests over random small trees and random params."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coagent_cli.errors import ExecutionError
from coagent_cli.tools import ToolLibrary, ToolResult, invoke, redo, undo
from coagent_cli.tools.check import diff, manifest, outside_footprint

LIBRARY = ToolLibrary.for_workspace("/nonexistent-ws", user_dir=Path("/nonexistent-user"))


def tool(name: str):  # noqa: ANN201 - a ToolSpec
    return LIBRARY.get(name)


def make_tree(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def run(name: str, root: Path, **params: Any) -> ToolResult:
    result = invoke(tool(name), params, root)
    assert result.ok, result.output
    return result


def read(root: Path, rel: str) -> str:
    return (root / rel).read_text()


def holds(root: Path, expect: tuple[str, str | None]) -> None:
    """`expect` is (path, text): the file's text, "<dir>" for a directory, None for absent."""
    rel, text = expect
    if text is None:
        assert not (root / rel).exists()
    elif text == "<dir>":
        assert (root / rel).is_dir()
    else:
        assert read(root, rel) == text


# (tool, starting tree, params, expected file after (path, text or None for absent))
CASES = [
    ("write_file", {"a.txt": "old\n"}, {"path": "a.txt", "content": "new\n"}, ("a.txt", "new\n")),
    ("write_file", {}, {"path": "n.txt", "content": "x"}, ("n.txt", "x")),
    ("create_file", {"d/k": ""}, {"path": "d/c.txt", "content": "c"}, ("d/c.txt", "c")),
    ("append_to_file", {"a.txt": "1\n"}, {"path": "a.txt", "text": "2\n"}, ("a.txt", "1\n2\n")),
    ("replace_in_file", {"a.py": "x = 1\ny = 2\n"},
     {"path": "a.py", "old": "y = 2", "new": "y = 3"}, ("a.py", "x = 1\ny = 3\n")),
    ("insert_lines", {"a": "1\n3"}, {"path": "a", "text": "2", "line": 1}, ("a", "1\n2\n3")),
    ("insert_lines", {"a": "1\n3"}, {"path": "a", "text": "4", "line": 2}, ("a", "1\n3\n4\n")),
    ("insert_lines", {"a": "x\ny\n"}, {"path": "a", "text": "0", "line": 0}, ("a", "0\nx\ny\n")),
    ("insert_lines", {"a": "x\ny\n"}, {"path": "a", "text": "m\n", "anchor": "x"},
     ("a", "x\nm\ny\n")),
    ("delete_file", {"a": "bye"}, {"path": "a"}, ("a", None)),
    ("move_file", {"a": "A"}, {"src": "a", "dst": "b"}, ("b", "A")),
    ("move_file", {"p/m.py": "M"}, {"src": "p", "dst": "q"}, ("q/m.py", "M")),
    ("make_dir", {}, {"path": "build"}, ("build", "<dir>")),
]


def observed(root: Path, before: dict) -> list:
    return diff(before, manifest(root))


@pytest.mark.parametrize("name, files, params, expect", CASES)
def test_forward_then_inverse_restores_the_tree(tmp_path: Path, name: str, files: dict,
                                                params: dict, expect: tuple) -> None:
    make_tree(tmp_path, {**files, "other/keep.txt": "untouched"})
    os.chmod(tmp_path / "other/keep.txt", 0o640)
    before = manifest(tmp_path)
    result = run(name, tmp_path, **params)
    holds(tmp_path, expect)
    assert not outside_footprint(observed(tmp_path, before), result.writes)
    undo(result)
    assert manifest(tmp_path) == before


def test_modes_and_symlinks_come_back(tmp_path: Path) -> None:
    make_tree(tmp_path, {"run.sh": "#!/bin/sh\n"})
    os.chmod(tmp_path / "run.sh", 0o755)
    os.symlink("run.sh", tmp_path / "link")
    before = manifest(tmp_path)
    for result in [run("delete_file", tmp_path, path="run.sh"),
                   run("delete_file", tmp_path, path="link")]:
        undo(result)
    assert manifest(tmp_path) == before
    result = run("write_file", tmp_path, path="run.sh", content="changed")
    os.chmod(tmp_path / "run.sh", 0o600)
    undo(result)
    assert manifest(tmp_path) == before


@pytest.mark.parametrize("name, params, words", [
    ("replace_in_file", {"path": "a", "old": "zzz", "new": "q"}, "not found"),
    ("replace_in_file", {"path": "a", "old": "x", "new": "q"}, "occurs 2 times"),
    ("replace_in_file", {"path": "a", "old": "", "new": "q"}, "empty"),
    ("replace_in_file", {"path": "nope", "old": "x", "new": "q"}, "not a regular file"),
    ("create_file", {"path": "a"}, "already exists"),
    ("write_file", {"path": "missing/dir/f", "content": ""}, "make_dir"),
    ("insert_lines", {"path": "a", "text": "t", "line": 9}, "outside"),
    ("insert_lines", {"path": "a", "text": "t"}, "exactly one"),
    ("insert_lines", {"path": "a", "text": "t", "anchor": "x"}, "2 lines"),
    ("delete_file", {"path": "d"}, "directory"),
    ("move_file", {"src": "a", "dst": "d"}, "destination exists"),
    ("make_dir", {"path": "d"}, "exists"),
])
def test_ops_that_do_not_apply_fail_clearly_and_change_nothing(
        tmp_path: Path, name: str, params: dict, words: str) -> None:
    make_tree(tmp_path, {"a": "x\nx\n", "d/f": "f"})
    before = manifest(tmp_path)
    result = invoke(tool(name), params, tmp_path)
    assert not result.ok and words in result.output.lower()
    assert manifest(tmp_path) == before
    undo(result)
    assert manifest(tmp_path) == before


# --- redo on a changed base -----------------------------------------------------------------

def test_replace_redoes_its_meaning_on_a_changed_base(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": "def f():\n    return 1\n"})
    result = run("replace_in_file", tmp_path, path="a.py", old="return 1", new="return 2")
    undo(result)
    (tmp_path / "a.py").write_text("import os\n\ndef f():\n    return 1\n")
    again = redo(result)
    assert read(tmp_path, "a.py") == "import os\n\ndef f():\n    return 2\n"
    undo(again)
    assert read(tmp_path, "a.py") == "import os\n\ndef f():\n    return 1\n"


def test_redo_that_no_longer_applies_fails_and_changes_nothing(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": "return 1\n"})
    result = run("replace_in_file", tmp_path, path="a.py", old="return 1", new="return 2")
    undo(result)
    (tmp_path / "a.py").write_text("return 3\n")
    with pytest.raises(ExecutionError, match="no longer applies.*not found"):
        redo(result)
    assert read(tmp_path, "a.py") == "return 3\n"


@pytest.mark.parametrize("name, files, params, change, expect", [
    ("write_file", {"a": "1"}, {"path": "a", "content": "W"}, {"a": "2"}, ("a", "W")),
    ("append_to_file", {"a": "1\n"}, {"path": "a", "text": "end\n"}, {"a": "0\n1\n"},
     ("a", "0\n1\nend\n")),
    ("insert_lines", {"a": "x\ny\n"}, {"path": "a", "text": "m", "anchor": "x"},
     {"a": "top\nx\ny\n"}, ("a", "top\nx\nm\ny\n")),
    ("insert_lines", {"a": "x\ny\n"}, {"path": "a", "text": "m", "line": 1},
     {"a": "top\nx\ny\n"}, ("a", "top\nm\nx\ny\n")),
    ("delete_file", {"a": "1"}, {"path": "a"}, {"a": "changed"}, ("a", None)),
    ("move_file", {"a": "1"}, {"src": "a", "dst": "b"}, {"a": "changed"}, ("b", "changed")),
    ("create_file", {}, {"path": "c", "content": "C"}, {"other": "o"}, ("c", "C")),
    ("make_dir", {}, {"path": "d"}, {"other": "o"}, ("d", "<dir>")),
])
def test_every_file_tool_redoes_on_a_changed_base(tmp_path: Path, name: str, files: dict,
                                                  params: dict, change: dict,
                                                  expect: tuple) -> None:
    make_tree(tmp_path, files)
    result = run(name, tmp_path, **params)
    undo(result)
    make_tree(tmp_path, change)
    base = manifest(tmp_path)
    again = redo(result)
    holds(tmp_path, expect)
    undo(again)
    assert manifest(tmp_path) == base


@pytest.mark.parametrize("name, files, params, change", [
    ("create_file", {}, {"path": "c"}, {"c": "someone else made it"}),
    ("move_file", {"a": "1"}, {"src": "a", "dst": "b"}, {"b": "taken"}),
    ("insert_lines", {"a": "x\n"}, {"path": "a", "text": "m", "anchor": "x"}, {"a": "x\nx\n"}),
    ("append_to_file", {"a": "1"}, {"path": "a", "text": "2"}, {"a/": None}),
])
def test_redo_refuses_when_the_base_no_longer_fits(tmp_path: Path, name: str, files: dict,
                                                   params: dict, change: dict) -> None:
    make_tree(tmp_path, files)
    result = run(name, tmp_path, **params)
    undo(result)
    for rel, text in change.items():
        if text is None:  # turn the file into a directory
            (tmp_path / rel).unlink()
            (tmp_path / rel).mkdir()
        else:
            make_tree(tmp_path, {rel: text})
    base = manifest(tmp_path)
    with pytest.raises(ExecutionError, match="no longer applies"):
        redo(result)
    assert manifest(tmp_path) == base


@pytest.mark.parametrize("name, params, change, needle", [
    ("read_file", {"path": "a"}, {"a": "second"}, "second"),
    ("list_dir", {"path": "."}, {"new.txt": ""}, "new.txt"),
    ("search", {"pattern": "TODO|FIXME", "path": "."}, {"s/z.py": "# FIXME"}, "s/z.py:1:"),
])
def test_read_tools_redo_against_the_new_state(tmp_path: Path, name: str, params: dict,
                                               change: dict, needle: str) -> None:
    make_tree(tmp_path, {"a": "first", "s/y.py": "# TODO"})
    before = manifest(tmp_path)
    result = run(name, tmp_path, **params)
    assert result.writes == frozenset() and manifest(tmp_path) == before
    undo(result)
    make_tree(tmp_path, change)
    assert needle in redo(result).output


def test_search_reads_the_searched_subtree_and_finds_nothing_quietly(tmp_path: Path) -> None:
    make_tree(tmp_path, {"s/a.py": "x"})
    result = run("search", tmp_path, pattern="absent", path="s")
    assert result.output == "" and [str(k) for k in result.reads] == ["dir:s"]


# --- properties over random trees and params -----------------------------------------------

NAMES = st.sampled_from(["a", "b.txt", "d/c", "d/e/f.py", "-x", "sp ace", "ü.txt", "d"])
TEXT = st.text(st.sampled_from("ab \n'\"$`\\;|&()x{}"), max_size=12)
TREES = st.dictionaries(NAMES, st.binary(max_size=20), max_size=5)


def _plant(root: Path, tree: dict[str, bytes]) -> None:
    for rel, data in tree.items():
        path = root / rel
        if any(p.is_file() for p in list(path.parents)[:-1] if p.is_relative_to(root)):
            continue  # a file already stands where a directory would go
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@st.composite
def file_ops(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(["write_file", "create_file", "append_to_file",
                                 "replace_in_file", "insert_lines", "delete_file", "move_file",
                                 "make_dir"]))
    path, text = draw(NAMES), draw(TEXT)
    params: dict[str, dict[str, Any]] = {
        "write_file": {"path": path, "content": text},
        "create_file": {"path": path, "content": text},
        "append_to_file": {"path": path, "text": text},
        "replace_in_file": {"path": path, "old": draw(TEXT), "new": text},
        "insert_lines": {"path": path, "text": text, "line": draw(st.integers(0, 3))},
        "delete_file": {"path": path},
        "move_file": {"src": path, "dst": draw(NAMES)},
        "make_dir": {"path": path},
    }
    return name, params[name]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES, op=file_ops())
def test_any_file_op_round_trips_and_stays_in_its_footprint(tree: dict[str, bytes],
                                                            op: tuple[str, dict]) -> None:
    name, params = op
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _plant(root, tree)
        before = manifest(root)
        result = invoke(tool(name), params, root)
        assert not outside_footprint(diff(before, manifest(root)), result.writes)
        if not result.ok:
            assert manifest(root) == before, result.output
        undo(result)
        assert manifest(root) == before


@settings(max_examples=100, deadline=None)
@given(body=st.text(st.sampled_from("ab\nc"), max_size=20), old=st.text("abc\n", min_size=1,
                                                                          max_size=3),
       new=TEXT)
def test_replace_changes_exactly_one_unique_occurrence(body: str, old: str, new: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "f").write_text(body)
        result = invoke(tool("replace_in_file"), {"path": "f", "old": old, "new": new}, root)
        starts = [i for i in range(len(body)) if body.startswith(old, i)]
        assert result.ok == (len(starts) == 1), result.output
        if result.ok:
            i = starts[0]
            assert (root / "f").read_text() == body[:i] + new + body[i + len(old):]
        else:
            assert (root / "f").read_text() == body
