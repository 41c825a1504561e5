"""Rebuilding a controller from its journaled events (core.replay): over random programs
and interleavings, a fresh controller fed the recorded events (through JSON, as the
journal stores them) decides exactly the recorded actions, in this process and in one
with another hash seed; cut at any point, it knows which effects were under way."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coagent_cli.core import make_controller
from coagent_cli.core.model import OpExecuted, OpUndone
from coagent_cli.core.replay import ReplayDiverged, event_from_json, kind_of, replay, to_json
from coagent_cli.sim.program import Append, Raw, Read, Think, Write
from coagent_cli.sim.simulator import Simulator
from sim_strategies import INITIAL, runs

CONTROLLERS = ["mtpo", "2pl", "occ", "serial", "none"]

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def record(controller: str, programs: dict, seed: int) -> list[dict[str, Any]]:
    """Run the simulator; every event fed and the actions it caused, as journal JSON."""
    core = make_controller(controller)
    rows: list[dict[str, Any]] = []
    handle = core.handle

    def recording(event: Any) -> list[Any]:
        actions = handle(event)
        rows.append({"kind": kind_of(event), "event": to_json(event),
                     "actions": [{"kind": kind_of(a), **to_json(a)} for a in actions]})
        return actions

    core.handle = recording  # type: ignore[method-assign]
    Simulator(core, programs, INITIAL, seed=seed).run()
    return json.loads(json.dumps(rows))  # exactly what survives the journal


def rebuild(controller: str, rows: list[dict[str, Any]], *, check: bool = True) -> Any:
    pairs = [(event_from_json(r["kind"], r["event"]), r["actions"] if check else None) for r in rows]
    return replay(make_controller(controller), pairs)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("controller", CONTROLLERS)
def test_replay_decides_exactly_what_was_recorded(controller: str) -> None:
    @PROPERTY
    @given(runs(), st.data())
    def check(run: tuple[dict, int], data: st.DataObject) -> None:
        programs, seed = run
        rows = record(controller, programs, seed)
        whole = rebuild(controller, rows)
        assert whole.pending == {}
        assert whole.core.quiescent
        cut = data.draw(st.integers(0, len(rows)))
        part = rebuild(controller, rows[:cut])
        assert sorted(part.pending) == sorted(under_way(rows[:cut]))

    check()


def under_way(rows: list[dict[str, Any]]) -> set[int]:
    """Effects emitted and not completed, worked out independently of Replay."""
    open_: set[int] = set()
    for r in rows:
        if r["kind"] in ("op_executed", "op_undone", "op_redone"):
            open_.discard(r["event"]["op_id"])
        open_ |= {a["op_id"] for a in r["actions"] if a["kind"] in ("execute", "serve_read", "undo", "redo")}
    return open_


def test_a_different_decision_is_caught() -> None:
    programs = {"a": (Think(5), Append("file:top", "a", 1)), "b": (Append("file:top", "b", 1),)}
    rows = next(r for r in (record("mtpo", programs, s) for s in range(50))
                if any(a["kind"] == "undo" for row in r for a in row["actions"]))
    tampered = json.loads(json.dumps(rows))
    victim = next(row for row in tampered if any(a["kind"] == "undo" for a in row["actions"]))
    victim["actions"] = [a for a in victim["actions"] if a["kind"] != "undo"]
    with pytest.raises(ReplayDiverged):
        rebuild("mtpo", tampered)


def test_a_completion_without_its_effect_is_caught() -> None:
    core = make_controller("mtpo")
    rebuilt = replay(core, [])
    with pytest.raises(ReplayDiverged):
        rebuilt.feed(OpUndone(7))
    with pytest.raises(ReplayDiverged):
        rebuilt.feed(OpExecuted(7, {}))


def random_programs(seed: int) -> dict:
    """Four agents of contended appends, writes, raw commands and reads (seeded)."""
    rng = random.Random(seed)
    files = ["file:top", "file:d0/a", "file:d0/b"]
    make = [lambda a: Append(rng.choice(files), a, 1), lambda a: Write(rng.choice(files), (rng.choice(files),), 1),
            lambda a: Raw(rng.choice(files), 1), lambda a: Read((rng.choice(files + ["dir:d0"]),), True, 1),
            lambda a: Think(rng.randint(1, 4))]
    return {f"ag{i}": tuple(rng.choice(make)(f"ag{i}") for _ in range(5)) for i in range(4)}


REPLAY_SCRIPT = textwrap.dedent("""
    import json, sys
    from coagent_cli.core import make_controller
    from coagent_cli.core.replay import event_from_json, replay
    for controller, rows in json.load(open(sys.argv[1])):
        pairs = [(event_from_json(r["kind"], r["event"]), r["actions"]) for r in rows]
        assert replay(make_controller(controller), pairs).pending == {}
    print("ok")
""")


@pytest.mark.timeout(120)
def test_replay_holds_under_another_hash_seed(tmp_path: Path) -> None:
    """Keys hash differently in another process: the decisions must not depend on it."""
    cases = [(controller, record(controller, random_programs(i), seed=i))
             for controller in CONTROLLERS for i in range(40)]
    data = tmp_path / "rows.json"
    data.write_text(json.dumps(cases))
    for hash_seed in ("1", "12345", "987654"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", REPLAY_SCRIPT, str(data)], env=env,
                              capture_output=True, text=True, timeout=100)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
