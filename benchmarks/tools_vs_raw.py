"""Declared tools vs raw commands: two agents on disjoint halves of one file tree.

    python benchmarks/tools_vs_raw.py [--steps 10] [--think 0.1] [--rounds 3]

Agent alice works under a/, agent bob under b/; each takes `--steps` steps (write a
file, append to a log, replace a word in an earlier file), thinking `--think` seconds
before each. The same work runs twice against a detached daemon (MTPO, the real
WorkspaceExecutor) on a fresh workspace:

- tools: begin_op(tool=write_file | append_to_file | replace_in_file): exact footprints,
  the two agents never conflict;
- raw:   the same steps as `python3 -c "..."` command lines run by the agent (the gated
  shell's part): the classifier knows no footprint for them, so each is `*` and every
  op conflicts with every op of the other agent.

Makespan is from the agents' start until both have finished and the daemon is quiescent
(background redos done). Both runs must end with the same tree; the script checks it.
Printed: makespan per mode (median over rounds), the ratio, and from the journal the
notices, undos, redos and waits of each mode, and the time agents spent in begin_op
(waiting for the grant; for a tool also running it, as the daemon runs tools itself).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from coagent_cli.bench.workloads import as_raw, disjoint_tool_steps
from coagent_cli.daemon.client import Client
from coagent_cli.daemon.run import DaemonSettings, Tokens, paths_for, start_detached, stop_daemon
from coagent_cli.journal import Journal

AGENTS = {"alice": "a", "bob": "b"}  # agent -> its directory; alice ranks first


@dataclass
class Outcome:
    makespan: float
    blocked: float                    # seconds agents spent in begin_op (waits; tools: also the run)
    counts: dict[str, int] = field(default_factory=dict)
    tree: dict[str, str] = field(default_factory=dict)


def agent(socket: str, token: str, name: str, ws: Path, raw: bool, n: int, think: float,
          blocked: list[float]) -> None:
    with Client(socket, timeout=120) as c:
        c.hello(agent=name, token=token)
        for tool, params in disjoint_tool_steps(AGENTS[name], n):
            time.sleep(think)
            t0 = time.perf_counter()
            if raw:
                line = as_raw(tool, params)
                grant = c.begin_op(command=line, cwd=str(ws))
                blocked.append(time.perf_counter() - t0)
                done = subprocess.run(["bash", "-c", line], cwd=ws, capture_output=True, timeout=60)
                c.end_op(grant["op"], done.returncode)
            else:
                grant = c.begin_op(tool=tool, params=params, cwd=str(ws))
                blocked.append(time.perf_counter() - t0)
                if grant["exit_status"] != 0:
                    raise RuntimeError(f"{tool} {params} failed: {grant}")
        while True:  # raw: notices about the other agent's writes are false alarms; take them
            c.inbox()
            if c.finish()["finished"]:
                return
            time.sleep(0.01)


def run_once(raw: bool, n: int, think: float) -> Outcome:
    ws = Path(tempfile.mkdtemp(prefix="tvr", dir="/tmp"))
    for part in AGENTS.values():
        (ws / part).mkdir()
        (ws / part / "seed.txt").write_text(f"{part} seed step\n")
    try:
        info = start_detached(DaemonSettings(ws, "mtpo", list(AGENTS)))
        tokens = Tokens.load(paths_for(ws).tokens)
        blocked: list[float] = []
        threads = [threading.Thread(target=agent, args=(info.socket, tokens.agents[a], a, ws, raw,
                                                          n, think, blocked)) for a in AGENTS]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_quiescent(info.socket, tokens.admin)
        makespan = time.perf_counter() - t0
        stop_daemon(ws)
        return Outcome(makespan, sum(blocked), journal_counts(ws), tree(ws))
    finally:
        stop_daemon(ws)
        shutil.rmtree(ws, ignore_errors=True)


def wait_quiescent(socket: str, admin: str) -> None:
    with Client(socket, timeout=60) as c:
        c.hello(token=admin, role="admin")
        deadline = time.monotonic() + 60
        while not c.status()["snapshot"]["quiescent"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not become quiescent")
            time.sleep(0.005)


def journal_counts(ws: Path) -> dict[str, int]:
    with Journal.open(paths_for(ws).journal) as j:
        kinds = [e.kind for e in j.timeline()]
    return {k: kinds.count(k) for k in ("notify", "undo", "redo", "wait", "hold")}


def tree(ws: Path) -> dict[str, str]:
    return {str(p.relative_to(ws)): p.read_text() for part in AGENTS.values()
            for p in sorted((ws / part).rglob("*")) if p.is_file()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--think", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = Path(tempfile.mkdtemp(prefix="tvr-config", dir="/tmp"))
    os.environ["XDG_CONFIG_HOME"] = str(config)  # the host's own tools stay out of it
    try:
        runs = {raw: [run_once(raw, args.steps, args.think) for _ in range(args.rounds)]
                for raw in (False, True)}
    finally:
        shutil.rmtree(config, ignore_errors=True)
    trees = {repr(sorted(o.tree.items())) for rs in runs.values() for o in rs}
    if len(trees) != 1:
        print("FINAL TREES DIFFER between runs", file=sys.stderr)
        return 1
    ideal = args.steps * args.think
    print(f"2 agents x {args.steps} steps, think {args.think:.2f} s, {args.rounds} rounds "
          f"(median); think time alone: {ideal:.2f} s")
    for raw, label in ((False, "tools"), (True, "raw  ")):
        rs = runs[raw]
        counts = {k: statistics.median(o.counts[k] for o in rs) for k in rs[0].counts}
        print(f"{label}: makespan {statistics.median(o.makespan for o in rs):.2f} s, "
              f"in begin_op {statistics.median(o.blocked for o in rs):.2f} s, "
              + ", ".join(f"{k} {v:g}" for k, v in counts.items()))
    ratio = statistics.median(o.makespan for o in runs[True]) / statistics.median(o.makespan for o in runs[False])
    print(f"raw / tools makespan: {ratio:.2f}x; final trees identical: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
