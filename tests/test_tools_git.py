"""The built-in git tools on a real repository: round trips, redo on a changed base, marks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from coagent_cli.errors import ExecutionError
from coagent_cli.tools import ToolLibrary, ToolResult, invoke, redo, undo
from coagent_cli.tools.check import diff, manifest, outside_footprint

LIBRARY = ToolLibrary.for_workspace("/nonexistent-ws", user_dir=Path("/nonexistent-user"))
ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1"}


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          env={**ENV, "PATH": "/usr/bin:/bin", "HOME": str(root)})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    (root / "a.txt").write_text("a1\n")
    (root / "sub").mkdir()
    (root / "sub" / "b.txt").write_text("b1\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "init")
    return root


def run(tool: str, root: Path, **params: str) -> ToolResult:
    result = invoke(LIBRARY.get(tool), params, root, env=ENV)
    assert result.ok, result.output
    return result


def round_trip(tool: str, root: Path, **params: str) -> ToolResult:
    before = manifest(root)
    result = run(tool, root, **params)
    changed = diff(before, manifest(root))
    assert changed and not outside_footprint(changed, result.writes)
    undo(result, env=ENV)
    assert manifest(root) == before
    return result


def test_git_add_round_trips_a_partially_staged_file(repo: Path) -> None:
    (repo / "a.txt").write_text("a2\n")
    git(repo, "add", "a.txt")
    (repo / "a.txt").write_text("a3\n")
    (repo / "new.txt").write_text("n\n")
    round_trip("git_add", repo, path="a.txt")
    round_trip("git_add", repo, path=".")
    assert git(repo, "show", ":a.txt") == "a2"


def test_git_add_redoes_the_current_content(repo: Path) -> None:
    (repo / "sub" / "b.txt").write_text("b2\n")
    result = run("git_add", repo, path="sub")
    undo(result, env=ENV)
    (repo / "sub" / "b.txt").write_text("b3\n")
    redo(result, env=ENV)
    assert git(repo, "show", ":sub/b.txt") == "b3"


def test_git_commit_undo_resets_the_ref_keeping_index_and_tree(repo: Path) -> None:
    old = git(repo, "rev-parse", "HEAD")
    (repo / "a.txt").write_text("a2\n")
    git(repo, "add", "a.txt")
    result = round_trip("git_commit", repo, message="change a")
    assert git(repo, "rev-parse", "HEAD") == old and result.captures["old_head"] == old
    assert git(repo, "diff", "--cached", "--name-only") == "a.txt"


def test_git_commit_redo_commits_the_new_index_or_refuses(repo: Path) -> None:
    (repo / "a.txt").write_text("a2\n")
    git(repo, "add", "a.txt")
    result = run("git_commit", repo, message="msg; $(touch x)")
    undo(result, env=ENV)
    (repo / "c.txt").write_text("c\n")
    git(repo, "add", "c.txt")
    redo(result, env=ENV)
    assert git(repo, "log", "-1", "--format=%s") == "msg; $(touch x)"
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["a.txt", "c.txt"]
    before = manifest(repo)
    with pytest.raises(ExecutionError, match="no longer applies"):
        redo(result, env=ENV)  # nothing staged any more
    assert manifest(repo) == before


def test_git_commit_undo_of_the_first_commit_leaves_the_branch_unborn(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "f").write_text("f")
    git(tmp_path, "add", "f")
    round_trip("git_commit", tmp_path, message="first")
    assert subprocess.run(["git", "rev-parse", "-q", "--verify", "HEAD"], cwd=tmp_path,
                          capture_output=True).returncode != 0


def test_branch_create_and_delete_round_trip_and_redo(repo: Path) -> None:
    round_trip("git_create_branch", repo, name="topic")
    created = run("git_create_branch", repo, name="topic")
    sha = git(repo, "rev-parse", "topic")
    round_trip("git_delete_branch", repo, name="topic")
    undo(created, env=ENV)
    (repo / "a.txt").write_text("moved on\n")
    git(repo, "commit", "-qam", "next")
    redo(created, env=ENV)  # on the new base the branch starts at the new HEAD
    assert git(repo, "rev-parse", "topic") == git(repo, "rev-parse", "HEAD") != sha
    with pytest.raises(ExecutionError, match="no longer applies"):
        redo(created, env=ENV)  # it exists now


def test_delete_branch_is_marked_inexact_and_says_why() -> None:
    spec = LIBRARY.get("git_delete_branch")
    assert not spec.inverse_exact and "reflog" in spec.inverse_note
    assert LIBRARY.get("git_commit").inverse_exact


def test_checkout_round_trips_with_uncommitted_changes(repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "feature")
    (repo / "feat.txt").write_text("f\n")
    git(repo, "add", "feat.txt")
    git(repo, "commit", "-q", "-m", "feat")
    git(repo, "switch", "-q", "main")
    (repo / "sub" / "b.txt").write_text("local edit\n")
    result = round_trip("git_checkout_branch", repo, branch="feature")
    assert result.captures["old_branch"] == "main"
    git(repo, "switch", "-q", "--detach", "HEAD")
    round_trip("git_checkout_branch", repo, branch="feature")
    redo(result, env=ENV)
    assert git(repo, "branch", "--show-current") == "feature"
    assert (repo / "sub" / "b.txt").read_text() == "local edit\n"


def test_git_tools_ignore_a_redirecting_environment(repo: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_DIR", str(repo / "elsewhere"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(repo / "other-index"))
    round_trip("git_create_branch", repo, name="x")


def test_unknown_branch_fails_clearly(repo: Path) -> None:
    before = manifest(repo)
    result = invoke(LIBRARY.get("git_checkout_branch"), {"branch": "nope"}, repo, env=ENV)
    assert not result.ok and "nope" in result.output
    undo(result, env=ENV)
    assert manifest(repo) == before
