"""What the ToolSmith buys: agents that keep running a project script the classifier
cannot see into (footprint `*`: every such line serializes all agents and costs a
shadow snapshot), with and without the ToolSmith alongside the run.

    python benchmarks/toolsmith_lift.py [--agents 4] [--steps 10] [--think 0.1]

Three runs of the same scripted plan on fresh copies of one workspace, in one process:
  raw        no ToolSmith: every line stays raw
  toolsmith  the ToolSmith alongside the run (every 0.2 s, 3 lines): later lines lifted
  declared   the tool registered before the run (the ceiling)
Reported: wall time, ratio to `raw`, lines lifted (op footprints not `*`), ops/s; the
three runs must end in the same files (asserted).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from coagent_cli.journal import Journal
from coagent_cli.run.launcher import RunOptions, run_plan
from coagent_cli.run.plan import parse_plan

STAMP = 'printf "%s\\n" "$2" >> "$1"\n'


def plan(agents: int, steps: int, think: float, toolsmith: bool) -> object:
    entries = []
    for a in range(agents):
        script = []
        for i in range(steps):
            script += [{"think": think}, {"bash": f"sh stamp.sh notes/a{a}-{i}.txt w{i}"}]
        entries.append({"name": f"a{a}", "task": "stamp", "script": script})
    data: dict[str, object] = {"agents": entries}
    if toolsmith:
        data["toolsmith"] = {"every": 0.2, "min_count": 3}
    return parse_plan(data, "benchmark plan")


def workspace(base: Path, name: str) -> Path:
    ws = base / name
    (ws / "notes").mkdir(parents=True)
    (ws / "stamp.sh").write_text(STAMP)
    return ws


def lifted(ws: Path) -> tuple[int, int]:
    with Journal.open(ws / ".coagent" / "journal.db") as journal:
        fps = [e.payload["op"]["writes"] for e in journal.timeline()
               if e.kind == "op_requested" and e.payload.get("core") == "event"]
    return sum(f != ["*"] for f in fps), len(fps)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--think", type=float, default=0.1)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tslift", dir="/tmp"))
    rows = []
    trees: list[dict[str, str]] = []
    try:
        seed = workspace(base, "seed")  # forge the tool once, for the `declared` run
        run_plan(plan(args.agents, 3, 0.0, False), RunOptions(seed))
        from toolsmith.smith import ToolSmith
        (forged,) = [o for o in ToolSmith(seed).once() if o.status == "registered"]
        for name, smith, declared in (("raw", False, False), ("toolsmith", True, False), ("declared", False, True)):
            ws = workspace(base, name)
            if declared:
                (ws / ".coagent" / "tools").mkdir(parents=True)
                shutil.copy(forged.detail, ws / ".coagent" / "tools")
            t0 = time.perf_counter()
            report = run_plan(plan(args.agents, args.steps, args.think, smith), RunOptions(ws))
            wall = time.perf_counter() - t0
            assert report.ok, report.failure_lines()
            up, total = lifted(ws)
            rows.append((name, wall, up, total))
            trees.append({p.name: p.read_text() for p in sorted((ws / "notes").iterdir())})
        assert trees[0] == trees[1] == trees[2], "the three runs ended in different trees"
    finally:
        shutil.rmtree(base, ignore_errors=True)
    raw = rows[0][1]
    print(f"{args.agents} agents x {args.steps} lines of `sh stamp.sh FILE WORD`, think {args.think} s")
    print(f"{'run':<10} {'wall':>8} {'vs raw':>7} {'lifted':>9} {'ops/s':>7}")
    for name, wall, up, total in rows:
        print(f"{name:<10} {wall:>7.2f}s {raw / wall:>6.2f}x {up:>4}/{total:<4} {total / wall:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
