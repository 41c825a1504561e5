"""WorkspaceExecutor on real files: every effect, undo and redo byte- and mode-exact."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from coagent_cli.core.keys import ALL, Key
from coagent_cli.core.model import ABSENT
from coagent_cli.errors import ExecutionError, OutsideWorkspace
from coagent_cli.executor.merge import merge3
from coagent_cli.executor.protocol import OpRequest, ShellCommand, ToolCall
from coagent_cli.executor.workspace import WorkspaceExecutor
from coagent_cli.journal import BlobStore, Journal
from coagent_cli.tools import ToolLibrary

pytestmark = pytest.mark.timeout(60)

LINES = "".join(f"line {i}\n" for i in range(1, 13))


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Files (bytes, mode), links and directories below root, except .coagent."""
    found: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if (rel_dir / d).as_posix() != ".coagent"]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir",)
            else:
                found[rel] = ("file", path.read_bytes(), stat.S_IMODE(st.st_mode))
    return found


def git(ws: Path, *args: str) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(ws.parent), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x",
           "GIT_COMMITTER_NAME": "u", "GIT_COMMITTER_EMAIL": "u@x"}
    subprocess.run(["git", *args], cwd=ws, env=env, capture_output=True, timeout=30, check=True)


class Rig:
    """An executor on a temp workspace, with a request helper."""

    def __init__(self, tmp: Path) -> None:
        self.ws = tmp / "ws"
        self.ws.mkdir()
        (self.ws / "notes.txt").write_bytes(b"old notes\n")
        (self.ws / "lines.txt").write_text(LINES)
        (self.ws / "keep.txt").write_bytes(b"keep\n")
        (self.ws / "gone.txt").write_bytes(b"to be deleted\n")
        state = self.ws / ".coagent"
        self.journal = Journal.open(state / "journal.db")
        self.blobs = BlobStore(state / "blobs")
        library = ToolLibrary.for_workspace(self.ws, user_dir=tmp / "no-user-tools")
        self.ex = WorkspaceExecutor(self.ws, state, journal=self.journal, blobs=self.blobs,
                                    library=library)
        self.next_id = 0

    def request(self, *, agent: str = "a", tool: str | None = None, line: str | None = None,
                **params: Any) -> int:
        self.next_id += 1
        action = ToolCall(tool, params, self.ws) if tool else ShellCommand(line or "", self.ws)
        self.ex.register(OpRequest(self.next_id, agent, action))
        return self.next_id

    def run(self, **kw: Any) -> tuple[int, Any]:
        op = self.request(**kw)
        self.ex.prepare(op)
        return op, self.ex.run(op, timeout=20)

    def read(self, name: str) -> bytes:
        return (self.ws / name).read_bytes()


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


# -- footprints -------------------------------------------------------------------------


def test_footprints_of_tools_and_shell_lines(rig: Rig) -> None:
    def fp(**kw: Any) -> Any:
        rig.next_id += 1
        action = ToolCall(kw["tool"], kw["params"], rig.ws) if "tool" in kw \
            else ShellCommand(kw["line"], rig.ws)
        return rig.ex.footprint(OpRequest(rig.next_id, "a", action))

    write = fp(tool="write_file", params={"path": "notes.txt", "content": "x"})
    assert write.writes == write.overwrites == {Key.parse("file:notes.txt")}
    read = fp(tool="read_file", params={"path": "notes.txt"})
    assert read.servable and read.reads == {Key.parse("file:notes.txt")} and not read.writes
    replace = fp(tool="replace_in_file", params={"path": "notes.txt", "old": "o", "new": "n"})
    assert not replace.overwrites and replace.reads == replace.writes
    assert fp(line="cat notes.txt").kind == "tool"  # a whole line matching a tool is it
    shell_read = fp(line="grep old notes.txt | wc -l")
    assert shell_read.kind == "read" and not shell_read.servable and not shell_read.writes
    redirect = fp(line="echo x >> notes.txt")
    assert redirect.kind == "write" and redirect.writes == {Key.parse("file:notes.txt")}
    raw = fp(line="python3 -c 'print(1)'")
    assert raw.kind == "raw" and raw.reads == raw.writes == {ALL} and raw.reversible
    net = fp(line="curl -s https://example.com -o page.html")
    assert not net.reversible
    with pytest.raises(OutsideWorkspace, match="outside the workspace"):
        fp(line="echo x > /tmp/coagent-elsewhere.txt")


# -- whole-file and in-place tools ------------------------------------------------------


def test_write_file_prepare_run_undo_redo(rig: Rig) -> None:
    before = tree(rig.ws)
    op, result = rig.run(tool="write_file", path="notes.txt", content="new notes\n")
    assert result.exit_status == 0 and rig.read("notes.txt") == b"new notes\n"
    (key, change), = result.writes.items()
    assert key == Key.parse("file:notes.txt") and change.before != change.after
    assert rig.ex.content(change.before) == b"old notes\n"
    assert rig.ex.content(change.after) == b"new notes\n"
    after = tree(rig.ws)
    rig.ex.undo(op)
    assert tree(rig.ws) == before
    redone = rig.ex.redo(op, base_changed=False)
    assert redone.ok and redone.writes == result.writes and tree(rig.ws) == after
    assert rig.journal.open_effects() == []
    actions = [e.action for e in rig.journal.effects(op)]
    assert actions == ["execute", "undo", "redo"]
    record = rig.journal.op(op)
    assert record is not None and record.after["notes.txt"].kind == "file"


def test_replace_in_file_redo_reruns_on_a_new_base(rig: Rig) -> None:
    op, result = rig.run(tool="replace_in_file", path="lines.txt", old="line 2\n", new="TWO\n")
    assert result.exit_status == 0
    rig.ex.undo(op)
    assert rig.read("lines.txt") == LINES.encode()
    rig.run(agent="b", tool="replace_in_file", path="lines.txt", old="line 9\n", new="NINE\n")
    redone = rig.ex.redo(op, base_changed=True)
    assert redone.ok
    assert rig.read("lines.txt") == LINES.replace("line 2\n", "TWO\n").replace(
        "line 9\n", "NINE\n").encode()


def test_append_to_a_new_file_undone_removes_it(rig: Rig) -> None:
    before = tree(rig.ws)
    op, result = rig.run(tool="append_to_file", path="log.txt", text="one\n")
    assert result.writes[Key.parse("file:log.txt")].before == ABSENT
    rig.ex.undo(op)
    assert tree(rig.ws) == before
    (rig.ws / "log.txt").write_bytes(b"zero\n")  # another op's write, in effect
    assert rig.ex.redo(op, base_changed=True).ok
    assert rig.read("log.txt") == b"zero\none\n"


def test_failed_tool_reports_no_writes_and_failed_redo_leaves_state(rig: Rig) -> None:
    _, result = rig.run(tool="replace_in_file", path="notes.txt", old="absent", new="x")
    assert result.exit_status == 1 and result.writes == {}
    op, _ = rig.run(tool="replace_in_file", path="notes.txt", old="old", new="new")
    rig.ex.undo(op)
    (rig.ws / "notes.txt").write_bytes(b"rewritten by someone\n")
    before = tree(rig.ws)
    redone = rig.ex.redo(op, base_changed=True)
    assert not redone.ok and "not found" in redone.reason
    assert tree(rig.ws) == before


def test_undo_refuses_when_the_live_file_is_not_the_after_image(rig: Rig) -> None:
    op, _ = rig.run(tool="write_file", path="notes.txt", content="mine\n")
    (rig.ws / "notes.txt").write_bytes(b"someone else\n")
    with pytest.raises(ExecutionError, match="not its after-image"):
        rig.ex.undo(op)
    assert rig.read("notes.txt") == b"someone else\n"


# -- shell lines ------------------------------------------------------------------------


def test_shell_redirect_append_undo_and_reexecute(rig: Rig) -> None:
    op, result = rig.run(line="echo x >> notes.txt")
    assert rig.read("notes.txt") == b"old notes\nx\n"
    assert set(result.writes) == {Key.parse("file:notes.txt")}
    rig.ex.undo(op)
    assert rig.read("notes.txt") == b"old notes\n"
    (rig.ws / "notes.txt").write_bytes(b"new base\n")
    assert rig.ex.redo(op, base_changed=True).ok
    assert rig.read("notes.txt") == b"new base\nx\n"


def test_agent_shell_runs_the_line_between_prepare_and_finish(rig: Rig) -> None:
    op = rig.request(line="printf 'y\\n' >> keep.txt")
    rig.ex.prepare(op)
    subprocess.run(["bash", "-c", "printf 'y\\n' >> keep.txt"], cwd=rig.ws, check=True)
    writes = rig.ex.finish(op, 0)
    assert set(writes) == {Key.parse("file:keep.txt")}
    rig.ex.undo(op)
    assert rig.read("keep.txt") == b"keep\n"


RAW = ("python3 -c \"import os; open('made.txt','w').write('made\\n'); "
       "open('keep.txt','a').write('more\\n'); os.remove('gone.txt'); "
       "os.makedirs('sub/deep'); open('sub/deep/x.sh','w').write('#!/bin/sh\\n'); "
       "os.chmod('sub/deep/x.sh', 0o755)\" && chmod +x keep.txt")


def test_raw_command_undo_restores_bytes_modes_and_deletions(rig: Rig) -> None:
    git(rig.ws, "init", "-q")
    git(rig.ws, "add", "-A")
    git(rig.ws, "commit", "-qm", "start")
    before = tree(rig.ws)
    op, result = rig.run(line=RAW)
    assert result.exit_status == 0, result.output
    assert {str(k) for k in result.writes} == {
        "file:made.txt", "file:keep.txt", "file:gone.txt", "file:sub/deep/x.sh"}
    assert result.writes[Key.parse("file:gone.txt")].after == ABSENT
    assert os.access(rig.ws / "keep.txt", os.X_OK)
    after = tree(rig.ws)
    rig.ex.undo(op)
    assert tree(rig.ws) == before  # bytes, modes, the deleted file back, sub/ gone
    assert rig.ex.redo(op, base_changed=False).ok
    assert tree(rig.ws) == after
    rig.ex.undo(op)
    assert tree(rig.ws) == before  # .git included: byte-identical throughout


def test_raw_reexecution_that_fails_is_reverted(rig: Rig) -> None:
    (rig.ws / "flag").write_bytes(b"")
    op, result = rig.run(line="python3 -c \"open('notes.txt','a').write('+\\n')\" && test -f flag")
    assert result.exit_status == 0
    rig.ex.undo(op)
    os.remove(rig.ws / "flag")
    before = tree(rig.ws)
    redone = rig.ex.redo(op, base_changed=True)
    assert not redone.ok and "exit 1" in redone.reason
    assert tree(rig.ws) == before


def test_timeout_kills_the_whole_process_group(rig: Rig) -> None:
    started = time.monotonic()
    op = rig.request(line="sleep 30 & sleep 30; echo never")
    rig.ex.prepare(op)
    result = rig.ex.run(op, timeout=0.5)
    assert result.exit_status == 124 and "killed after" in result.output
    assert time.monotonic() - started < 10


def test_output_is_capped(rig: Rig) -> None:
    _, result = rig.run(line="head -c 2000000 /dev/zero | tr '\\0' a")
    assert len(result.output) < 300_000 and "truncated" in result.output


# -- three-way merge redo ---------------------------------------------------------------


def _read_then_write(rig: Rig, agent: str, new_text: str) -> int:
    rig.run(agent=agent, tool="read_file", path="lines.txt")
    op, result = rig.run(agent=agent, tool="write_file", path="lines.txt", content=new_text)
    assert result.exit_status == 0
    return op


def test_merge_redo_combines_disjoint_edits(rig: Rig) -> None:
    op = _read_then_write(rig, "late", LINES.replace("line 1\n", "FIRST\n"))
    rig.ex.undo(op)
    rig.run(agent="early", tool="replace_in_file", path="lines.txt", old="line 11\n", new="X\n")
    redone = rig.ex.redo(op, base_changed=True)
    assert redone.ok
    assert rig.read("lines.txt") == LINES.replace("line 1\n", "FIRST\n").replace(
        "line 11\n", "X\n").encode()
    rig.ex.undo(op)  # the merged after-image is what undo checks and reverts
    assert rig.read("lines.txt") == LINES.replace("line 11\n", "X\n").encode()


def test_merge_conflict_fails_cleanly(rig: Rig) -> None:
    op = _read_then_write(rig, "late", LINES.replace("line 1\n", "FIRST\n"))
    rig.ex.undo(op)
    rig.run(agent="early", tool="replace_in_file", path="lines.txt", old="line 1\n", new="ONE\n")
    before = tree(rig.ws)
    redone = rig.ex.redo(op, base_changed=True)
    assert not redone.ok and "conflict" in redone.reason
    assert tree(rig.ws) == before


def test_blind_whole_file_write_is_rewritten_not_merged(rig: Rig) -> None:
    op, _ = rig.run(agent="late", tool="write_file", path="lines.txt", content="blind\n")
    rig.ex.undo(op)
    rig.run(agent="early", tool="replace_in_file", path="lines.txt", old="line 11\n", new="X\n")
    assert rig.ex.redo(op, base_changed=True).ok
    assert rig.read("lines.txt") == b"blind\n"


def test_merge3() -> None:
    assert merge3(b"a\nb\nc\nd\n", b"A\nb\nc\nd\n", b"a\nb\nc\nD\n") == b"A\nb\nc\nD\n"
    assert merge3(b"a\n", b"x\n", b"y\n") is None
    assert merge3(b"a\0b", b"a\0c", b"a\0d") is None  # binary: no merge


# -- reads served from stored versions, shadowed writes ---------------------------------


def test_serve_read_file_from_a_stored_version(rig: Rig) -> None:
    _, first = rig.run(tool="write_file", path="notes.txt", content="v1\n")
    rig.run(tool="write_file", path="notes.txt", content="v2\n")
    op = rig.request(agent="reader", tool="read_file", path="notes.txt")
    digest = first.writes[Key.parse("file:notes.txt")].after
    served = rig.ex.serve(op, {Key.parse("file:notes.txt"): digest})
    assert served.exit_status == 0 and served.output == "v1\n"
    op2 = rig.request(agent="reader", tool="read_file", path="notes.txt")
    gone = rig.ex.serve(op2, {Key.parse("file:notes.txt"): ABSENT})
    assert gone.exit_status == 1
    assert rig.read("notes.txt") == b"v2\n"


def test_serve_search_in_a_scratch_copy(rig: Rig) -> None:
    _, first = rig.run(tool="write_file", path="notes.txt", content="needle here\n")
    rig.run(tool="write_file", path="notes.txt", content="nothing\n")
    op = rig.request(tool="search", pattern="needle", path=".")
    served = rig.ex.serve(op, {Key.parse("file:notes.txt"): first.writes[
        Key.parse("file:notes.txt")].after})
    assert served.exit_status == 0 and "notes.txt:1:needle here" in served.output


def test_shadow_computes_a_write_without_touching_the_file(rig: Rig) -> None:
    op = rig.request(tool="write_file", path="notes.txt", content="hidden\n")
    writes = rig.ex.shadow(op)
    assert rig.ex.content(writes[Key.parse("file:notes.txt")].after) == b"hidden\n"
    assert rig.read("notes.txt") == b"old notes\n"
    assert rig.ex.redo(op, base_changed=True).ok  # materialised
    assert rig.read("notes.txt") == b"hidden\n"


def test_git_tools_undo_by_their_inverse_and_redo(rig: Rig) -> None:
    git(rig.ws, "init", "-q", "-b", "main")
    git(rig.ws, "config", "user.email", "u@x")
    git(rig.ws, "config", "user.name", "u")
    git(rig.ws, "commit", "-q", "--allow-empty", "-m", "init")

    def head() -> str:
        return (rig.ws / ".git/refs/heads/main").read_text()

    start = head()
    (rig.ws / "c.txt").write_bytes(b"c\n")
    add, _ = rig.run(tool="git_add", path="c.txt")
    commit, result = rig.run(tool="git_commit", message="add c")
    assert result.exit_status == 0 and set(map(str, result.writes)) == {"git:ref/heads/main"}
    committed = head()
    assert committed != start
    rig.ex.undo(commit)
    assert head() == start
    rig.ex.undo(add)
    rig.ex.redo(add, base_changed=False)
    assert rig.ex.redo(commit, base_changed=False).ok and head() == committed
    rig.ex.undo(commit)
    assert rig.ex.redo(commit, base_changed=True).ok and head() not in (start, "")
