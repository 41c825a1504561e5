"""Each MTPO case on real files, through real gated bash shells of different ranks
talking to the real daemon (issue 4's acceptance scenarios)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from coagent_cli.shell.gated import GatedShell
from test_daemon import DaemonThread

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def ws() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp"))
    (path / "counter").write_text("0\n")
    (path / "notes.txt").write_text("original\n")
    (path / "log").write_text("")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def run(ws: Path) -> Iterator[tuple[DaemonThread, dict[str, GatedShell]]]:
    daemon = DaemonThread(ws, ["alice", "bob"]).start()
    shells: dict[str, GatedShell] = {}
    try:
        for agent in ("alice", "bob"):
            env = dict(os.environ, COAGENT_SOCKET=str(daemon.info.socket), COAGENT_AGENT=agent,
                       COAGENT_TOKEN=daemon.tokens.agents[agent])
            shells[agent] = GatedShell(ws, env, timeout=30).start()
        yield daemon, shells
    finally:
        for shell in shells.values():
            shell.close()
        daemon.stop()


def settle(daemon: DaemonThread) -> None:
    """Redos of later agents run after end_op returns; wait (bounded) for them."""
    for _ in range(200):
        with daemon.client() as admin:
            snap = admin.status()["snapshot"]
        if not any(op.get("state") in ("running", "held", "undone") for op in snap.get("ops", [])):
            return
        time.sleep(0.05)


def inbox(daemon: DaemonThread, agent: str) -> list[dict]:
    with daemon.client(agent) as c:
        return c.inbox(peek=True)["notices"]


def test_lost_update_prevented(run, ws: Path) -> None:
    daemon, sh = run
    rmw = 'n=$(cat counter); echo $((n+1)) > counter'
    assert sh["bob"].run(rmw).exit_status == 0  # the later agent gets there first
    assert sh["alice"].run(rmw).exit_status == 0
    settle(daemon)
    assert ws.joinpath("counter").read_text() == "2\n"  # both increments, as in serial order


def test_stale_read_is_noticed(run, ws: Path) -> None:
    daemon, sh = run
    assert "original" in sh["bob"].run("cat notes.txt").output
    sh["alice"].run("echo changed > notes.txt")
    settle(daemon)
    notices = inbox(daemon, "bob")
    assert [(n["kind"], n["key"], n["by"]) for n in notices] == [("stale_read", "file:notes.txt", "alice")]
    assert "+changed" in (notices[0].get("diff") or "")
    assert inbox(daemon, "alice") == []


def test_misplaced_write_reordered(run, ws: Path) -> None:
    daemon, sh = run
    sh["bob"].run("echo bob >> log")
    sh["alice"].run("echo alice >> log")
    settle(daemon)
    assert ws.joinpath("log").read_text() == "alice\nbob\n"  # serial order: alice, then bob


def test_order_filtered_read(run, ws: Path) -> None:
    daemon, sh = run
    sh["bob"].run("echo bobs > notes.txt")
    assert sh["alice"].run("cat notes.txt").output.strip() == "original"  # as if bob had not run
    settle(daemon)
    assert ws.joinpath("notes.txt").read_text() == "bobs\n"  # bob's write is back in place


def test_whole_file_rewrite_after_a_read_is_merged_not_rerun(run, ws: Path) -> None:
    daemon, sh = run
    ws.joinpath("five.txt").write_text("1\n2\n3\n4\n5\n")
    assert sh["bob"].run("cat five.txt").exit_status == 0
    sh["bob"].run(r"printf '1\n2\n3\n4\nfive-by-bob\n' > five.txt")  # the later agent first
    assert sh["alice"].run("cat five.txt").output.splitlines()[-1] == "5"  # order-filtered
    sh["alice"].run(r"printf 'one-by-alice\n2\n3\n4\n5\n' > five.txt")
    settle(daemon)
    # Serial: alice's edit, then bob's on top of it. Re-running bob's printf would erase alice's line.
    assert ws.joinpath("five.txt").read_text() == "one-by-alice\n2\n3\n4\nfive-by-bob\n"
    kinds = {n["kind"] for n in inbox(daemon, "bob")}
    assert "stale_read" in kinds  # bob is still told: his read predates alice's change
