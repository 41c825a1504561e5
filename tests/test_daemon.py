"""The daemon end to end, in process: real socket, real files, real clients in threads.

The executor is the real WorkspaceExecutor when it is importable, else the file-only
SnapshotExecutor of test_daemon_support (both honour the Executor protocol)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from coagent_cli.daemon.client import Client, RemoteError
from coagent_cli.daemon.run import (
    DaemonInfo,
    DaemonSettings,
    Tokens,
    paths_for,
    serve_daemon,
    workspace_executor,
)
from coagent_cli.daemon.journaling import unified_diff
from coagent_cli.journal import Journal
from test_daemon_support import SnapshotExecutor

pytestmark = pytest.mark.timeout(60)

AGENTS = ["alice", "bob", "carol"]


def executor_factory() -> Callable[..., Any]:
    if os.environ.get("COAGENT_TEST_EXECUTOR") == "fake":
        return SnapshotExecutor
    try:
        import coagent_cli.executor.workspace  # noqa: F401
    except ImportError:
        return SnapshotExecutor
    return workspace_executor


class DaemonThread:
    """serve_daemon on its own event loop in a background thread."""

    def __init__(self, workspace: Path, agents: list[str], cc: str = "mtpo",
                 factory: Callable[..., Any] | None = None) -> None:
        self.settings = DaemonSettings(workspace, cc, list(agents))
        self.factory = factory or executor_factory()
        self.info: DaemonInfo | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> "DaemonThread":
        self._thread.start()
        assert self._ready.wait(20), "daemon did not start"
        if self.error is not None:
            raise self.error
        return self

    def _main(self) -> None:
        def ready(info: DaemonInfo) -> None:
            self.info = info
            self._ready.set()
        try:
            asyncio.run(serve_daemon(self.settings, on_ready=ready, executor_factory=self.factory))
        except BaseException as exc:  # handed to the test thread
            self.error = exc
        finally:
            self._ready.set()

    @property
    def paths(self):  # type: ignore[no-untyped-def]
        return paths_for(self.settings.workspace)

    @property
    def tokens(self) -> Tokens:
        return Tokens.load(self.paths.tokens)

    def client(self, agent: str | None = None, *, token: str | None = None) -> Client:
        assert self.info is not None
        c = Client(self.info.socket, timeout=20)
        tokens = self.tokens
        try:
            if agent is None:
                c.hello(token=token or tokens.admin, role="admin")
            else:
                c.hello(agent=agent, token=token or tokens.agents[agent])
        except BaseException:
            c.close()
            raise
        return c

    def stop(self) -> None:
        if self._thread.is_alive() and self.info is not None:
            with self.client() as admin:
                admin.shutdown()
        self._thread.join(20)
        assert not self._thread.is_alive(), "daemon did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cg", dir="/tmp"))
    (path / "f.txt").write_text("one\ntwo\nthree\n")
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text("print('hi')\n")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(workspace: Path) -> Iterator[DaemonThread]:
    d = DaemonThread(workspace, AGENTS).start()
    yield d
    d.stop()


def run_line(c: Client, ws: Path, line: str) -> dict[str, Any]:
    """What a gated shell does with one command line."""
    grant = c.begin_op(command=line, cwd=str(ws))
    if grant["action"] != "run":  # served (a read from stored versions) or skip
        return {**grant, "output": grant.get("content") or ""}
    done = subprocess.run(["bash", "-c", line], cwd=ws, capture_output=True, text=True, timeout=20)
    ended = c.end_op(grant["op"], done.returncode)
    return {**grant, "output": done.stdout, "ended": ended}


def events(ws: Path) -> list[Any]:
    with Journal.open(paths_for(ws).journal) as j:
        return j.timeline()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# ---------------------------------------------------------------- basics


def test_begin_end_runs_line_and_journals_before_ack(daemon: DaemonThread, workspace: Path) -> None:
    with daemon.client("alice") as alice:
        out = run_line(alice, workspace, "echo hello > new.txt")
        assert out["action"] == "run"
        assert out["ended"]["type"] == "op_ended"
    assert (workspace / "new.txt").read_text() == "hello\n"
    kinds = [e.kind for e in events(workspace) if e.op_id == out["op"]]
    assert kinds[:2] == ["op_requested", "execute"]
    assert "op_executed" in kinds and "completed" in kinds


def test_wrong_token_refused(daemon: DaemonThread) -> None:
    assert daemon.info is not None
    with Client(daemon.info.socket, timeout=10) as c:
        with pytest.raises(RemoteError) as err:
            c.hello(agent="alice", token="not-the-token")
        assert err.value.code == "bad_token"
        with pytest.raises(RemoteError) as err:
            c.hello(agent="alice", token=daemon.tokens.agents["bob"])  # another agent's token
        assert err.value.code == "bad_token"
    with pytest.raises(RemoteError) as err:
        daemon.client(token="nope")
    assert err.value.code == "bad_token"


def test_end_op_of_unknown_or_foreign_op_is_refused(daemon: DaemonThread, workspace: Path) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        grant = alice.begin_op(command="echo x > a.txt", cwd=str(workspace))
        with pytest.raises(RemoteError) as err:
            bob.end_op(grant["op"], 0)
        assert err.value.code == "unknown_op"
        with pytest.raises(RemoteError) as err:
            alice.end_op(999_999, 0)
        assert err.value.code == "unknown_op"
        alice.end_op(grant["op"], 0)
        with pytest.raises(RemoteError) as err:
            alice.end_op(grant["op"], 0)  # twice
        assert err.value.code == "not_granted"


def test_status_shows_agents_and_ops(daemon: DaemonThread, workspace: Path) -> None:
    with daemon.client("alice") as alice:
        run_line(alice, workspace, "echo a >> f.txt")
        assert alice.finish()["finished"] is True
    with daemon.client() as admin:
        snap = admin.status()["snapshot"]
    states = {a["name"]: a["state"] for a in snap["agents"]}
    assert states == {"alice": "finished", "bob": "registered", "carol": "registered"}
    assert snap["cc"] == "mtpo" and snap["ops"][0]["summary"] == "echo a >> f.txt"


# ---------------------------------------------------------------- MTPO on real files


def test_order_filtered_read_sees_state_without_later_write(daemon: DaemonThread, workspace: Path) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        run_line(bob, workspace, "echo bob >> f.txt")
        out = run_line(alice, workspace, "cat f.txt")
    assert out["output"] == "one\ntwo\nthree\n"  # bob's later-ranked write was set aside
    # and put back, by a redo that runs in the background after alice's end_op
    wait_until(lambda: (workspace / "f.txt").read_text() == "one\ntwo\nthree\nbob\n")


def test_stale_read_notice_names_key_and_writer(daemon: DaemonThread, workspace: Path) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        run_line(bob, workspace, "cat f.txt")
        run_line(alice, workspace, "echo alice >> f.txt")
        wait_until(lambda: bool(bob.inbox(peek=True)["notices"]))
        notices = bob.inbox()["notices"]
        assert bob.inbox(peek=True)["notices"] == []  # taken
    (notice,) = notices
    assert notice["kind"] == "stale_read" and notice["key"] == "file:f.txt" and notice["by"] == "alice"
    assert "+alice" in notice["diff"]


def rmw(c: Client, ws: Path, line_to_add: str) -> list[int]:
    """Read f.txt, think, write it back with one line added. Returns the op ids."""
    read = run_line(c, ws, "cat f.txt")
    body = read["output"] + line_to_add + "\n"
    write = run_line(c, ws, f"printf %s {shlex_quote(body)} > f.txt")
    return [read["op"], write["op"]]


def shlex_quote(text: str) -> str:
    import shlex
    return shlex.quote(text)


def repair(c: Client, ws: Path, agent: str, ops: list[int], line_to_add: str) -> list[int]:
    """What a careful model does with a stale_read or write_dropped notice (one notice
    per key carries the most severe kind): retract the steps that used the stale read,
    then redo them on the new state. write_reordered needs nothing."""
    for _ in range(5):
        notices = c.inbox()["notices"]
        if not any(n["kind"] in ("stale_read", "write_dropped") for n in notices):
            return ops
        c.retract(agent, ops)
        ops = rmw(c, ws, line_to_add)
    raise AssertionError("repair did not converge")


def test_lost_update_prevented(daemon: DaemonThread, workspace: Path) -> None:
    """bob (rank 1) reads and writes first; alice (rank 0) then does the same. Both
    lines end up in the file: alice's write goes under bob's, bob is told and repairs."""
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        bob_ops = rmw(bob, workspace, "bob")
        rmw(alice, workspace, "alice")
        wait_until(lambda: bool(bob.inbox(peek=True)["notices"]))
        repair(bob, workspace, "bob", bob_ops, "bob")
        assert alice.finish()["finished"] and bob.finish()["finished"]
    text = (workspace / "f.txt").read_text()
    assert text == "one\ntwo\nthree\nalice\nbob\n"


def test_two_agents_in_threads_append_without_loss(daemon: DaemonThread, workspace: Path) -> None:
    def work(agent: str) -> None:
        with daemon.client(agent) as c:
            for i in range(4):
                run_line(c, workspace, f"echo {agent}{i} >> log.txt")
            c.finish()
    threads = [threading.Thread(target=work, args=(a,)) for a in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    lines = (workspace / "log.txt").read_text().split()
    assert sorted(lines) == sorted(f"{a}{i}" for a in ("alice", "bob") for i in range(4))
    # serial order: every alice line before every bob line
    assert lines == [f"alice{i}" for i in range(4)] + [f"bob{i}" for i in range(4)]


# ---------------------------------------------------------------- disconnects, retract


def test_disconnect_mid_op_finishes_op_and_marks_crash(daemon: DaemonThread, workspace: Path) -> None:
    alice = daemon.client("alice")
    grant = alice.begin_op(command="echo half > half.txt", cwd=str(workspace))
    (workspace / "half.txt").write_text("half\n")
    alice.close()  # gone without end_op
    with daemon.client() as admin:
        wait_until(lambda: {a["name"]: a["state"] for a in admin.status()["snapshot"]["agents"]}["alice"] == "crashed")
    with daemon.client("bob") as bob:  # alice's latches are released
        run_line(bob, workspace, "echo bob >> half.txt")
    assert (workspace / "half.txt").read_text() == "half\nbob\n"
    executed = [e for e in events(workspace) if e.kind == "op_executed" and e.op_id == grant["op"]]
    assert executed and executed[0].payload["exit_status"] == -1


def test_undo_agent_retracts_its_writes_and_reorders_later_ones(daemon: DaemonThread, workspace: Path) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        run_line(alice, workspace, "echo alice >> f.txt")
        run_line(bob, workspace, "echo bob >> f.txt")
        with daemon.client() as admin:
            reply = admin.retract("alice", "all")
        assert reply["ops"]
    wait_until(lambda: (workspace / "f.txt").read_text() == "one\ntwo\nthree\nbob\n")


def test_unified_diff_is_capped() -> None:
    old = b"".join(b"line %d\n" % i for i in range(5000))
    diff = unified_diff(old, b"", "big.txt", cap=1024)
    assert diff is not None and len(diff.encode()) < 1200 and diff.endswith("truncated at 1024 bytes)\n")
    assert unified_diff(b"\xff\xfe", b"x", "bin") is None


# ---------------------------------------------------------------- fuzz and security


def fuzz_lines(rng: "random.Random", n: int) -> list[bytes]:
    import json as _json

    shapes = [
        lambda: rng.randbytes(rng.randint(1, 60)).replace(b"\n", b" "),
        lambda: b"{" * rng.randint(1, 40),
        lambda: _json.dumps({"type": rng.choice(["nope", "", "BEGIN_OP", 7])}).encode(),
        lambda: _json.dumps({"type": "end_op", "op": rng.randint(-5, 10**6),
                             "exit_status": rng.randint(-3, 300)}).encode(),
        lambda: _json.dumps({"type": "begin_op", "cwd": rng.choice([1, None, ""])}).encode(),
        lambda: _json.dumps({"type": "begin_op", "command": "ls", "cwd": "/", "extra": 1}).encode(),
        lambda: _json.dumps({"type": "inbox", "peek": rng.choice(["yes", 1, None])}).encode(),
        lambda: _json.dumps({"type": "retract", "agent": rng.choice(["bob", "zed", "../x"]),
                             "ops": [rng.randint(1, 9)]}).encode(),
        lambda: _json.dumps({"type": "hello", "protocol": 1, "agent": "alice", "token": "x"}).encode(),
        lambda: _json.dumps({"type": "shutdown"}).encode(),
        lambda: _json.dumps({"type": "read", "key": rng.choice(["", "zz:", "file:../../etc/passwd"])}).encode(),
        lambda: b"x" * rng.randint(2 << 20, (2 << 20) + 10),
    ]
    return [rng.choice(shapes)() for _ in range(n)]


def test_fuzz_never_disturbs_a_well_behaved_agent(daemon: DaemonThread, workspace: Path) -> None:
    import json as _json
    import random

    rng = random.Random(7)
    with daemon.client("bob") as fuzzer:
        for line in fuzz_lines(rng, 2000):
            fuzzer.send_raw(line + b"\n")
            reply = fuzzer.receive_raw()
            assert reply["type"] in ("error", "inbox_reply", "retract_reply", "read_reply"), reply
            if reply["type"] == "error":
                assert reply["code"] and reply["message"]
        _json.dumps(fuzzer.status())
    with daemon.client("alice") as alice:
        run_line(alice, workspace, "echo fine >> f.txt")
        assert alice.finish()["finished"]
    assert (workspace / "f.txt").read_text().endswith("fine\n")


@pytest.mark.parametrize("line", ["echo x > ../escape.txt", "echo x > /tmp/coagent-escape.txt"])
def test_write_outside_the_workspace_is_refused(daemon: DaemonThread, workspace: Path, line: str) -> None:
    if daemon.factory is SnapshotExecutor:
        pytest.skip("the stand-in executor does not police paths")
    with daemon.client("alice") as alice:
        with pytest.raises(RemoteError) as err:
            alice.begin_op(command=line, cwd=str(workspace))
        assert "outside" in err.value.code or "outside" in str(err.value)
        run_line(alice, workspace, "echo still-fine >> f.txt")  # the agent goes on
    assert not (workspace.parent / "escape.txt").exists()


def test_monitor_stream_shows_ops_and_notices(daemon: DaemonThread, workspace: Path) -> None:
    assert daemon.info is not None
    with Client(daemon.info.socket, timeout=10) as monitor:
        monitor.hello(token=daemon.tokens.monitor, role="monitor")
        monitor.request("subscribe")
        assert monitor.receive_raw()["kind"] == "snapshot"
        with daemon.client("alice") as alice, daemon.client("bob") as bob:
            run_line(bob, workspace, "cat f.txt")
            run_line(alice, workspace, "echo alice >> f.txt")
        kinds: list[str] = []
        while "notice" not in kinds:
            kinds.append(monitor.receive_raw()["kind"])
    assert "op_begun" in kinds and "op_ended" in kinds


def test_usage_reported_by_agents_shows_in_status(daemon: DaemonThread) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        alice.usage(1200, 0.25)
        alice.usage(300, 0.05)
        bob.usage(40)
    with daemon.client() as admin:
        snap = admin.status()["snapshot"]
    tokens = {a["name"]: a["tokens"] for a in snap["agents"]}
    assert tokens == {"alice": 1500, "bob": 40, "carol": 0}
    assert snap["totals"]["tokens"] == 1540 and abs(snap["totals"]["cost"] - 0.30) < 1e-9
