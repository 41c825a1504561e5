"""A daemon killed in the middle of a sequence (undo a later op, run an earlier agent's
op, redo the later op): `recover` finishes the sequence from the journal, and a daemon
started on the recovered run still slips an earlier agent's new op under a later
agent's old ones, so the finished run equals the serial one.

The daemon dies at a chosen point of the real executor (crash_executor): before or
after an undo, a redo, or the finish of the earlier agent's command."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coagent_cli.daemon.client import Client
from coagent_cli.daemon.journaling import core_history
from coagent_cli.daemon.resume import rebuild
from coagent_cli.daemon.run import DaemonSettings, Tokens, paths_for, recover, start_detached
from coagent_cli.errors import CoagentError
from coagent_cli.journal import Journal
from test_daemon_crash import _wait_dead
from test_daemon_recover import run_steps

pytestmark = pytest.mark.timeout(90)

A0 = ["echo a0 >> shared.txt", "echo a0-2 >> shared.txt"]
A1 = ["echo a1 >> shared.txt", "cat shared.txt", "echo a1-2 >> shared.txt"]
SERIAL = "one\na0\na0-2\na1\na1-2\n"


@pytest.fixture
def ws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="crr", dir="/tmp"))
    (root / "shared.txt").write_text("one\n")
    tests = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("COAGENT_EXECUTOR", "crash_executor:build")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def step(ws: Path, name: str, lines: list[str], *, finish: bool = False) -> None:
    info = Tokens.load(paths_for(ws).tokens)
    socket = str(paths_for(ws).socket)
    run_steps(socket, info.agents[name], name, ws, lines, random.Random(0), finish=finish)


# point -> (tree after recover, whether a0's first step was rolled back)
CASES = {
    "undo-start:1": ("one\na1\n", True),    # nothing of the sequence had happened
    "undo-end:1": ("one\na1\n", True),      # a1's op undone, the core not yet told
    "finish-start:2": ("one\na1\n", True),  # a0's command ran; its effect still open
    "finish-end:2": ("one\na0\na1\n", False),  # a0's op finished, the core not yet told
    "redo-start:1": ("one\na0\na1\n", False),  # a1's op undone, waiting for its redo
    "redo-end:1": ("one\na0\na1\n", False),    # a1's op redone, the core not yet told
}


@pytest.mark.parametrize("point", list(CASES))
def test_recover_finishes_the_sequence_and_the_run_goes_on_in_rank_order(
        ws: Path, monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    after_recover, rolled_back = CASES[point]
    monkeypatch.setenv("COAGENT_TEST_CRASH", point)
    info = start_detached(DaemonSettings(ws, "mtpo", ["a0", "a1"]))
    step(ws, "a1", A1[:1])
    assert (ws / "shared.txt").read_text() == "one\na1\n"
    try:  # the daemon dies under a0's step, or just after it (a redo runs in the background)
        step(ws, "a0", A0[:1])
    except CoagentError:
        pass
    _wait_dead(info.pid)

    report = recover(ws)
    assert (ws / "shared.txt").read_text() == after_recover, report
    assert report.problems == []
    told = [line for line in report.finished if "must run it again" in line]
    assert bool(told) == rolled_back, report.finished
    assert all("echo a0 >> shared.txt" in line for line in told)
    with Journal.open(paths_for(ws).journal) as journal:
        assert journal.open_effects() == []
        resumed = rebuild(journal, "mtpo", None)  # the journal rebuilds itself, nothing under way
        assert resumed is not None and resumed.replay.pending == {}

    monkeypatch.delenv("COAGENT_EXECUTOR")
    info = start_detached(DaemonSettings(ws, "mtpo", []))  # the run continues
    step(ws, "a1", A1[1:])
    step(ws, "a0", (A0 if rolled_back else A0[1:]), finish=True)  # slipped under a1's ops
    snapshot = settle_and_stop(info.socket, ws)  # a1 takes its notices (its `cat` went stale)
    _wait_dead(info.pid)
    assert (ws / "shared.txt").read_text() == SERIAL
    assert snapshot["quiescent"], (snapshot["agents"], snapshot["totals"])


def settle_and_stop(socket: str, ws: Path) -> dict:
    """Let agents finish again while notices reach them (the daemon redoes in the
    background), until the run is quiescent (bounded); its status; stop it."""
    with Client(socket, timeout=20) as admin:
        admin.hello(token=Tokens.load(paths_for(ws).tokens).admin, role="admin")
        for _ in range(100):
            snapshot = admin.status()["snapshot"]
            if snapshot["quiescent"]:
                break
            for agent in snapshot["agents"]:
                if agent["state"] != "finished" or agent["pending_notices"]:
                    step(ws, agent["name"], [], finish=True)
            time.sleep(0.05)
        admin.shutdown()
    return snapshot


def test_a_journal_without_marked_core_traffic_is_not_replayed(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.db") as journal:
        journal.record("op_requested", {"op": {"op_id": 1, "agent": "a"}})
        assert core_history(journal) is None
        assert rebuild(journal, "mtpo", None) is None
