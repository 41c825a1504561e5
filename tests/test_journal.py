"""The SQLite journal: durable before acknowledged, open effects found after a crash."""

from __future__ import annotations

import itertools
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coagent_cli.errors import JournalError
from coagent_cli.journal import FileImage, Journal, OpRecord

pytestmark = pytest.mark.timeout(60)

A_FILE = FileImage("file", digest="ab" * 32, mode=0o644)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    ticks = itertools.count(1000)
    j = Journal.open(tmp_path / ".coagent" / "journal.db", clock=lambda: float(next(ticks)))
    yield j
    j.close()


def test_wal_mode_and_full_sync_are_on(journal: Journal) -> None:
    assert journal.pragma("journal_mode") == "wal"
    assert journal.pragma("synchronous") == 2  # FULL


def test_events_come_back_in_order_with_payloads(journal: Journal) -> None:
    first = journal.record("op", {"cmd": "sed -i s/a/b/ f"}, agent="a0", op_id=1)
    second = journal.record("notice", {"key": "file:f", "diff": "-a\n+b"}, agent="a1")
    third = journal.record("decision", {"action": "undo", "ops": [1]})
    assert first < second < third
    events = journal.timeline()
    assert [e.kind for e in events] == ["op", "notice", "decision"]
    assert events[0].payload == {"cmd": "sed -i s/a/b/ f"} and events[0].op_id == 1
    assert [e.ts for e in events] == [1000.0, 1001.0, 1002.0]  # from the injected clock
    assert [e.seq for e in journal.timeline(agent="a1")] == [second]
    assert [e.seq for e in journal.timeline(after_seq=second)] == [third]


def test_an_effect_never_ended_is_open_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with Journal.open(path) as j:
        done = j.begin_effect(1, "apply", {"a.txt": A_FILE})
        j.end_effect(done, "done")
        left = j.begin_effect(2, "undo", {"b.txt": FileImage.absent(), "l": FileImage("symlink", target="a")})
    with Journal.open(path) as j:
        (effect,) = j.open_effects()
        assert effect.id == left and effect.op_id == 2 and effect.action == "undo"
        assert effect.images == {"b.txt": FileImage.absent(), "l": FileImage("symlink", target="a")}
        assert effect.outcome is None
        j.end_effect(left, "reverted")
        assert j.open_effects() == []
        assert [e.outcome for e in j.effects()] == ["done", "reverted"]


def test_ending_an_effect_twice_or_an_unknown_one_is_refused(journal: Journal) -> None:
    effect = journal.begin_effect(1, "apply", {})
    journal.end_effect(effect, "done")
    with pytest.raises(JournalError):
        journal.end_effect(effect, "done")
    with pytest.raises(JournalError):
        journal.end_effect(999, "done")


def test_ops_are_upserted(journal: Journal) -> None:
    op = OpRecord(op_id=7, agent="a0", rank=0, label="echo hi > f", state="admitted",
                  reads=(), writes=("file:f",), before={"f": FileImage.absent()})  # fmt: skip
    journal.upsert_op(op)
    journal.upsert_op(OpRecord(7, "a0", 0, "echo hi > f", "applied", (), ("file:f",),
                               {"f": FileImage.absent()}, {"f": A_FILE}))  # fmt: skip
    journal.set_op_state(7, "undone")
    (stored,) = journal.ops()
    assert stored == OpRecord(7, "a0", 0, "echo hi > f", "undone", (), ("file:f",),
                              {"f": FileImage.absent()}, {"f": A_FILE})  # fmt: skip
    assert journal.op(7) == stored and journal.op(8) is None
    assert journal.ops(agent="a1") == []
    with pytest.raises(JournalError):
        journal.set_op_state(8, "undone")


def test_a_first_schema_journal_gains_op_details(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE ops (op_id INTEGER PRIMARY KEY, agent TEXT NOT NULL, rank INTEGER NOT NULL,
            label TEXT NOT NULL, state TEXT NOT NULL, reads TEXT NOT NULL, writes TEXT NOT NULL,
            before TEXT NOT NULL, after TEXT NOT NULL, updated_ts REAL NOT NULL);
        INSERT INTO ops VALUES (1, 'a0', 0, 'echo', 'done', '[]', '[]', '{}', '{}', 1.0);
        PRAGMA user_version=1;
    """)
    conn.close()
    with Journal.open(path) as journal:
        assert journal.pragma("user_version") == 2
        assert journal.op(1).detail == {}  # an old row: nothing to take up after a restart
        journal.upsert_op(OpRecord(2, "a0", 0, "x", "done", detail={"request": {"line": "x", "cwd": "/"}}))
        assert journal.op(2).detail == {"request": {"line": "x", "cwd": "/"}}


def test_launch_manifest_is_written_once(journal: Journal) -> None:
    assert journal.launch_manifest() is None
    journal.record_launch({})
    assert journal.launch_manifest() == {}
    with pytest.raises(JournalError, match="already"):
        journal.record_launch({"a": A_FILE})
    assert journal.launch_manifest() == {}


def test_launch_manifest_round_trip(journal: Journal) -> None:
    images = {"src/a.py": A_FILE, "link": FileImage("symlink", target="src/a.py")}
    journal.record_launch(images)
    assert journal.launch_manifest() == images


def test_atomic_groups_calls_and_rolls_back_on_error(journal: Journal) -> None:
    with pytest.raises(RuntimeError):
        with journal.atomic():
            journal.record("op", {"n": 1})
            journal.begin_effect(1, "apply", {})
            raise RuntimeError("boom")
    assert journal.timeline() == [] and journal.effects() == []
    with journal.atomic():
        journal.record("op", {"n": 2})
        journal.begin_effect(2, "apply", {})
    assert len(journal.timeline()) == 1 and len(journal.open_effects()) == 1


def test_meta_values(journal: Journal) -> None:
    assert journal.get_meta("launch_snapshot") is None
    journal.set_meta("launch_snapshot", {"tree": "abc", "gitdir": "def"})
    assert journal.get_meta("launch_snapshot") == {"tree": "abc", "gitdir": "def"}


def test_worker_threads_may_write_concurrently(journal: Journal) -> None:
    def write(agent: str) -> None:
        for i in range(50):
            journal.record("op", {"i": i}, agent=agent)

    threads = [threading.Thread(target=write, args=(f"a{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    events = journal.timeline()
    assert len(events) == 200 and len({e.seq for e in events}) == 200
    for n in range(4):
        assert [e.payload["i"] for e in journal.timeline(agent=f"a{n}")] == list(range(50))


def test_sqlite_failures_become_journal_errors(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(JournalError):
        Journal.open(tmp_path / "dir.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError):
        Journal.open(garbage)


_WRITER = """
import sys
from pathlib import Path
from coagent_cli.journal import FileImage, Journal

j = Journal.open(Path(sys.argv[1]))
effect = j.begin_effect(7, "raw", {"a.txt": FileImage.absent()})
print("effect", effect, flush=True)
for i in range(200_000):
    seq = j.record("op", {"i": i, "pad": "x" * 200}, agent="a0", op_id=i)
    print("ack", seq, i, flush=True)
"""


def test_journal_survives_sigkill_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    env = dict(os.environ, PYTHONWARNINGS="error")
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env)
    acked: dict[int, int] = {}
    try:
        lines = _lines(proc, deadline=time.monotonic() + 30)
        tag, effect_id = next(lines).split()
        assert tag == "effect"
        for line in lines:
            _, seq, i = line.split()
            acked[int(seq)] = int(i)
            if len(acked) >= 40:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with Journal.open(path) as j:
        assert j.pragma("integrity_check") == "ok"
        events = {e.seq: e for e in j.timeline()}
        assert len(events) >= len(acked)  # writes after the last ack may also have landed
        for seq, i in acked.items():
            assert events[seq].payload["i"] == i and events[seq].op_id == i
        assert [e.id for e in j.open_effects()] == [int(effect_id)]


def _lines(proc: subprocess.Popen[bytes], *, deadline: float):
    """Lines of the child's stdout, giving up at `deadline`."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                line = proc.stdout.readline()
                if not line:
                    raise AssertionError(f"writer exited early with {proc.wait(timeout=10)}")
                yield line.decode()
        raise AssertionError("writer did not answer in time")
    finally:
        selector.close()
