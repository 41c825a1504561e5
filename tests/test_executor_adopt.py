"""A restarted executor takes up the ops a dead one journaled (WorkspaceExecutor.adopt):
it undoes and redoes them byte-exact, knows which are applied, and keeps each agent's
merge base, so a whole-file write is still merged rather than re-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from coagent_cli.executor.protocol import OpRequest, ToolCall
from coagent_cli.executor.workspace import WorkspaceExecutor
from coagent_cli.journal import Journal
from coagent_cli.tools import ToolLibrary
from test_executor import Rig, tree

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def restarted(rig: Rig, tmp_path: Path) -> WorkspaceExecutor:
    """A new executor on the same workspace and journal, as a restarted daemon builds it."""
    journal = Journal.open(rig.ws / ".coagent" / "journal.db")
    library = ToolLibrary.for_workspace(rig.ws, user_dir=tmp_path / "no-user-tools")
    ex = WorkspaceExecutor(rig.ws, rig.ws / ".coagent", journal=journal, blobs=rig.blobs, library=library)
    assert ex.adopt(journal.ops()) == []
    return ex


def test_adopted_ops_undo_and_redo_byte_exact(rig: Rig, tmp_path: Path) -> None:
    launch = tree(rig.ws)
    one, _ = rig.run(tool="replace_in_file", path="lines.txt", old="line 3", new="LINE THREE")
    two, _ = rig.run(line="echo x > new.txt && rm gone.txt && chmod 600 keep.txt && ln -s keep.txt link")
    three, _ = rig.run(tool="append_to_file", path="notes.txt", text="more\n")
    raw = "import os; os.makedirs('py/deep'); open('py/deep/out','w').write('o'); os.remove('lines.txt')"
    four, _ = rig.run(line=f'python3 -c "{raw}"')  # footprint `*`: undone from shadow snapshots
    ops = (one, two, three, four)
    applied = tree(rig.ws)

    ex = restarted(rig, tmp_path)
    assert all(ex.applied(op) for op in ops)
    for op in reversed(ops):
        ex.undo(op)
    assert tree(rig.ws) == launch
    again = restarted(rig, tmp_path)  # the undos were journaled with their effects
    assert not any(again.applied(op) for op in ops)
    for op in ops:
        assert again.redo(op, False).ok
    assert tree(rig.ws) == applied
    assert again.writes_of(one) == rig.ex.writes_of(one)


def test_a_merge_base_seen_before_the_restart_is_kept(rig: Rig, tmp_path: Path) -> None:
    rig.run(agent="a", line="cat notes.txt")  # a sees "old notes"
    ex = restarted(rig, tmp_path)
    mine = 100
    ex.register(OpRequest(mine, "a", ToolCall("write_file", {"path": "notes.txt",
                                                             "content": "old notes\nmine\n"}, rig.ws)))
    ex.prepare(mine)
    assert ex.run(mine).exit_status == 0
    ex.undo(mine)  # an earlier agent's write slips under it
    (rig.ws / "notes.txt").write_text("theirs\nold notes\n")
    assert ex.redo(mine, True).ok
    assert (rig.ws / "notes.txt").read_text() == "theirs\nold notes\nmine\n"  # merged, not re-run


def test_an_op_whose_tool_is_gone_is_reported_not_taken_up(rig: Rig, tmp_path: Path) -> None:
    tools = rig.ws / ".coagent" / "tools"
    tools.mkdir(parents=True)
    (tools / "stamp.yaml").write_text(
        "name: stamp\ndescription: stamp a file\nparams:\n  path: {type: string}\n"
        "command: echo stamped > {path}\nwrites: [\"file:{path}\"]\ninverse: snapshot\n")
    lib = ToolLibrary.for_workspace(rig.ws, user_dir=tmp_path / "no-user-tools")
    rig.ex.library = lib
    rig.run(tool="stamp", path="keep.txt")
    (tools / "stamp.yaml").unlink()
    journal = Journal.open(rig.ws / ".coagent" / "journal.db")
    ex = WorkspaceExecutor(rig.ws, rig.ws / ".coagent", journal=journal, blobs=rig.blobs,
                           library=ToolLibrary.for_workspace(rig.ws, user_dir=tmp_path / "no-user-tools"))
    problems = ex.adopt(journal.ops())
    assert len(problems) == 1 and "stamp" in problems[0]
