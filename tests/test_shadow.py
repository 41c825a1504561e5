"""Shadow-git snapshots: every change seen, every restore byte-exact, the user's .git untouched."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from coagent_cli.core.keys import Key
from coagent_cli.errors import OutsideWorkspace
from coagent_cli.journal import BlobStore, FileImage
from coagent_cli.workspace import PathChange, Snapshotter, workspace_key

pytestmark = pytest.mark.timeout(60)

Entry = tuple[str, bytes | str | None, int | None]


def tree(root: Path, *, skip: tuple[str, ...] = (".coagent",), mtimes: bool = False) -> dict[str, tuple]:
    """Everything below root: files (bytes, mode), links (target), directories."""
    found: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        dirnames[:] = [d for d in dirnames if (Path(rel_dir) / d).as_posix() not in skip]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir",)
            else:
                extra = (st.st_mtime_ns,) if mtimes else ()
                found[rel] = ("file", path.read_bytes(), stat.S_IMODE(st.st_mode), *extra)
    return found


def git(ws: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"], "HOME": str(ws.parent), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x",
        "GIT_COMMITTER_NAME": "u", "GIT_COMMITTER_EMAIL": "u@x",
    }  # fmt: skip
    done = subprocess.run(["git", *args], cwd=ws, env=env, capture_output=True, timeout=30, check=True)
    return done.stdout.decode()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "a.py").write_bytes(b"print('a')\n")
    (root / "src" / "pkg" / "b.py").write_bytes(b"b = 2\n")
    (root / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "data.bin").write_bytes(bytes(range(256)) * 4)
    (root / "empty").write_bytes(b"")
    (root / "crlf.txt").write_bytes(b"one\r\ntwo\nthree\r\n")
    (root / ".gitattributes").write_bytes(b"* text eol=crlf\n")
    (root / ".gitignore").write_bytes(b"build/\n")
    (root / "build").mkdir()
    (root / "build" / "out.o").write_bytes(b"\x7fELF")
    (root / "link").symlink_to("src/a.py")
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name != "run.sh":
            path.chmod(0o644)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    return root


@pytest.fixture
def snapper(ws: Path) -> Snapshotter:
    state = ws / ".coagent"
    return Snapshotter(ws, state, BlobStore(state / "blobs"))


def test_unchanged_workspace_gives_an_equal_snapshot(snapper: Snapshotter) -> None:
    first = snapper.snapshot()
    assert snapper.snapshot() == first
    assert snapper.changes(first, snapper.snapshot()) == []


def test_created_modified_deleted_chmodded_are_detected_and_restored(ws: Path, snapper: Snapshotter) -> None:
    original = tree(ws)
    before = snapper.snapshot()

    (ws / "src" / "a.py").write_bytes(b"print('changed')\n")  # modified
    (ws / "src" / "pkg" / "b.py").unlink()  # deleted (and its directory left empty)
    (ws / "src" / "pkg").rmdir()
    (ws / "new" / "deep").mkdir(parents=True)
    (ws / "new" / "deep" / "c.txt").write_bytes(b"created\n")  # created, with directories
    (ws / "data.bin").chmod(0o755)  # chmod +x
    (ws / "run.sh").chmod(0o644)  # chmod -x
    (ws / "link").unlink()
    (ws / "link").symlink_to("run.sh")  # retargeted symlink
    (ws / "empty").unlink()
    (ws / "empty").mkdir()
    (ws / "empty" / "inside").write_bytes(b"file became a directory")
    (ws / "build" / "out.o").write_bytes(b"rebuilt")  # ignored by the user's .gitignore
    (ws / "crlf.txt").write_bytes(b"one\r\ntwo\r\n")

    after = snapper.snapshot()
    changes = {c.path: c for c in snapper.changes(before, after)}
    assert set(changes) == {
        "src/a.py", "src/pkg/b.py", "new/deep/c.txt", "data.bin", "run.sh", "link",
        "empty", "empty/inside", "build/out.o", "crlf.txt",
    }  # fmt: skip
    assert changes["new/deep/c.txt"].before == FileImage.absent()
    assert changes["src/pkg/b.py"].after == FileImage.absent()
    assert (changes["data.bin"].before.mode, changes["data.bin"].after.mode) == (0o644, 0o755)
    assert changes["link"].after == FileImage("symlink", target="run.sh")
    assert changes["empty"].after == FileImage.absent()
    assert changes["src/a.py"].key == Key.parse("file:src/a.py")

    snapper.restore(list(changes), before)
    assert tree(ws) == original
    assert snapper.snapshot() == before


def test_restore_can_also_go_forward(ws: Path, snapper: Snapshotter) -> None:
    before = snapper.snapshot()
    (ws / "src" / "a.py").unlink()
    (ws / "x" / "y").mkdir(parents=True)
    (ws / "x" / "y" / "z").write_bytes(b"z")
    (ws / "x" / "y" / "z").chmod(0o755)
    changed = tree(ws)
    after = snapper.snapshot()
    paths = [c.path for c in snapper.changes(before, after)]
    snapper.restore(paths, before)
    assert not (ws / "x").exists()
    snapper.restore(paths, after)
    assert tree(ws) == changed


def test_change_images_can_be_applied_without_the_shadow_repo(ws: Path, snapper: Snapshotter) -> None:
    """What `recover` does: revert from before-images kept in the journal."""
    original = tree(ws)
    before = snapper.snapshot()
    (ws / "run.sh").write_bytes(b"rm -rf /\n")
    (ws / "extra").write_bytes(b"extra")
    changes = snapper.changes(before, snapper.snapshot())
    images = {c.path: FileImage.from_json(c.before.to_json()) for c in changes}
    snapper.apply(images)
    assert tree(ws) == original


def test_user_git_is_untouched_by_shadow_operations(ws: Path, snapper: Snapshotter) -> None:
    git_before = tree(ws / ".git", skip=(), mtimes=True)
    first = snapper.snapshot()
    (ws / "src" / "a.py").write_bytes(b"edited\n")
    second = snapper.snapshot()
    paths = [c.path for c in snapper.changes(first, second)]
    snapper.restore(paths, first)
    snapper.snapshot()
    assert tree(ws / ".git", skip=(), mtimes=True) == git_before
    assert git(ws, "status", "--porcelain") == ""


def test_changes_inside_user_git_are_detected_and_undone(ws: Path, snapper: Snapshotter) -> None:
    original = tree(ws)
    head = git(ws, "rev-parse", "HEAD")
    before = snapper.snapshot()
    (ws / "src" / "a.py").write_bytes(b"print('v2')\n")
    git(ws, "commit", "-qam", "second")
    git(ws, "branch", "feature")
    after = snapper.snapshot()
    changes = snapper.changes(before, after)
    keys = {c.key for c in changes}
    assert {Key.parse("git:ref/heads/main"), Key.parse("git:ref/heads/feature")} <= keys
    assert {Key.parse("git:index"), Key.parse("git:objects/"), Key.parse("file:src/a.py")} <= keys
    created = [c for c in changes if c.path.startswith(".git/objects/")]
    assert created and all(c.before == FileImage.absent() for c in created)

    snapper.restore([c.path for c in changes], before)
    assert tree(ws) == original
    assert git(ws, "rev-parse", "HEAD") == head
    assert git(ws, "status", "--porcelain") == ""


def test_coagent_state_is_not_part_of_a_snapshot(ws: Path, snapper: Snapshotter) -> None:
    before = snapper.snapshot()
    (ws / ".coagent" / "journal.db").write_bytes(b"journal")
    (ws / ".coagent" / "sub").mkdir()
    (ws / ".coagent" / "sub" / "x").write_bytes(b"x")
    assert snapper.snapshot() == before


def test_a_state_dir_elsewhere_in_the_workspace_is_excluded_too(ws: Path) -> None:
    state = ws / "var" / "coagent-state"
    snapper = Snapshotter(ws, state, BlobStore(state / "blobs"))
    before = snapper.snapshot()
    (state / "noise").write_bytes(b"noise")
    assert snapper.snapshot() == before


def test_honor_gitignore_skips_ignored_files(ws: Path) -> None:
    state = ws / ".coagent"
    snapper = Snapshotter(ws, state, BlobStore(state / "blobs"), honor_gitignore=True)
    before = snapper.snapshot()
    (ws / "build" / "out.o").write_bytes(b"rebuilt")
    assert snapper.snapshot() == before


def test_escaping_paths_are_refused(ws: Path, snapper: Snapshotter, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    a_file = FileImage("file", digest="ab" * 32, mode=0o644)  # refused before it is read
    (outside / "secret").write_bytes(b"secret")
    (ws / "escape").symlink_to(outside)
    snap = snapper.snapshot()
    for bad in ["../outside/secret", str(outside / "secret"), "escape/secret", ".coagent/x", "", "."]:
        with pytest.raises(OutsideWorkspace):
            snapper.restore([bad], snap)
    with pytest.raises(OutsideWorkspace):
        snapper.apply({"escape/secret": FileImage.absent()})
    with pytest.raises(OutsideWorkspace):  # a link placed in the same batch is checked too
        snapper.apply({"hop": FileImage("symlink", target=str(outside)), "hop/new": a_file})
    assert (outside / "secret").read_bytes() == b"secret"
    assert not os.path.lexists(ws / "hop")


def test_absolute_paths_inside_the_workspace_are_accepted(ws: Path, snapper: Snapshotter) -> None:
    before = snapper.snapshot()
    (ws / "src" / "a.py").write_bytes(b"changed")
    snapper.restore([str(ws / "src" / "a.py")], before)
    assert (ws / "src" / "a.py").read_bytes() == b"print('a')\n"


def test_nested_repository_without_commits_does_not_break_snapshots(ws: Path, snapper: Snapshotter) -> None:
    (ws / "vendor").mkdir()
    git(ws / "vendor", "init", "-q")
    (ws / "vendor" / "file").write_bytes(b"v")
    (ws / "top.txt").write_bytes(b"top")
    before = snapper.snapshot()
    assert before.opaque == ("vendor",)
    (ws / "top.txt").write_bytes(b"top 2")
    changes = snapper.changes(before, snapper.snapshot())
    assert [c.path for c in changes] == ["top.txt"]


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("src/a.py", "file:src/a.py"),
        (".git/HEAD", "git:HEAD"),
        (".git/index", "git:index"),
        (".git/refs/heads/main", "git:ref/heads/main"),
        (".git/objects/ab/cdef", "git:objects/"),
        (".git/logs/HEAD", "git:logs/HEAD"),
        (".gitignore", "file:.gitignore"),
    ],
)
def test_workspace_key(path: str, key: str) -> None:
    assert workspace_key(path) == Key.parse(key)
    assert PathChange(path, FileImage.absent(), FileImage.absent()).key == Key.parse(key)


def test_a_same_size_rewrite_inside_git_right_after_a_snapshot_is_seen(
    ws: Path, snapper: Snapshotter
) -> None:
    """The racy case: same size, same second. The stat cache must not hide it."""
    desc = ws / ".git" / "description"
    desc.write_bytes(b"aaaa")
    before = snapper.snapshot()
    desc.write_bytes(b"bbbb")
    changes = snapper.changes(before, snapper.snapshot())
    assert [c.path for c in changes] == [".git/description"]


def test_snapshots_outlive_the_snapshotter(ws: Path, snapper: Snapshotter) -> None:
    """A restarted daemon (or `coagent recover`) can still restore an older snapshot."""
    original = tree(ws)
    before = snapper.snapshot()
    (ws / "src" / "a.py").write_bytes(b"lost?\n")
    (ws / ".git" / "description").write_bytes(b"changed\n")
    state = ws / ".coagent"
    again = Snapshotter(ws, state, BlobStore(state / "blobs"))
    after = again.snapshot()
    again.restore([c.path for c in again.changes(before, after)], before)
    assert tree(ws) == original
