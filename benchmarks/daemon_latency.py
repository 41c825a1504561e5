"""Cost of the real daemon: controller, journal and executor behind the socket.

    python benchmarks/daemon_latency.py [--ops N] [--clients 32] [--per-client 10]

The daemon is a detached process (`coagent daemon start`) on a temporary workspace with
the real WorkspaceExecutor. Measured:
- p50/p99 round trip of begin_op + end_op for a small op (`echo x >> f.txt`), the
  command itself NOT run in between: this is what the gate adds to a command line;
- ops per second with `--clients` agents at once, each appending to its own file;
- the journal's cost per op: rows per op in the run's journal, and the time of one
  journal transaction shaped like a feed (a few rows + meta, synchronous=FULL);
- what a restart after a crash costs: rebuilding the controller from that journal
  (daemon.resume.rebuild: replay with every decision checked), per op and in all.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from coagent_cli.daemon.client import Client
from coagent_cli.daemon.resume import rebuild
from coagent_cli.daemon.run import DaemonSettings, Tokens, paths_for, start_detached, stop_daemon
from coagent_cli.journal import Journal


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def round_trips(socket: str, token: str, ws: Path, n: int) -> list[float]:
    times = []
    with Client(socket, timeout=30) as c:
        c.hello(agent="a0", token=token)
        for _ in range(n):
            t0 = time.perf_counter()
            grant = c.begin_op(command="echo x >> f.txt", cwd=str(ws))
            c.end_op(grant["op"], 0)
            times.append(time.perf_counter() - t0)
    return times


def throughput(socket: str, tokens: Tokens, ws: Path, clients: int, per_client: int) -> float:
    def work(i: int) -> None:
        with Client(socket, timeout=60) as c:
            c.hello(agent=f"a{i + 1}", token=tokens.agents[f"a{i + 1}"])
            for _ in range(per_client):
                grant = c.begin_op(command=f"echo x >> c{i}.txt", cwd=str(ws))
                c.end_op(grant["op"], 0)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * per_client / (time.perf_counter() - t0)


def journal_cost(n: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="jb", dir="/tmp"))
    try:
        with Journal.open(folder / "j.db") as j:
            t0 = time.perf_counter()
            for i in range(n):
                with j.atomic():
                    for kind in ("op_executed", "completed", "redo"):
                        j.record(kind, {"op_id": i, "writes": {"file:f.txt": {"before": "a", "after": "b"}}})
                    j.set_meta("core", {"stats": {"executed": i}})
            return (time.perf_counter() - t0) / n
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=10)
    args = parser.parse_args()
    ws = Path(tempfile.mkdtemp(prefix="db", dir="/tmp"))
    (ws / "f.txt").write_text("")
    agents = [f"a{i}" for i in range(args.clients + 1)]
    try:
        info = start_detached(DaemonSettings(ws, "mtpo", agents))
        tokens = Tokens.load(paths_for(ws).tokens)
        rt = round_trips(info.socket, tokens.agents["a0"], ws, args.ops)
        ops_s = throughput(info.socket, tokens, ws, args.clients, args.per_client)
        stop_daemon(ws)
        with Journal.open(paths_for(ws).journal) as j:
            rows = len(j.timeline())
            t0 = time.perf_counter()
            rebuilt = rebuild(j, "mtpo", None)
            replay = time.perf_counter() - t0
            assert rebuilt is not None and not rebuilt.replay.pending
        total_ops = args.ops + args.clients * args.per_client
        feed = journal_cost(200)
    finally:
        stop_daemon(ws)
        shutil.rmtree(ws, ignore_errors=True)
    print(f"begin+end round trip ({args.ops} ops): p50 {statistics.median(rt) * 1e3:.2f} ms, "
          f"p99 {percentile(rt, 99) * 1e3:.2f} ms")
    print(f"throughput, {args.clients} concurrent agents: {ops_s:.0f} ops/s")
    print(f"journal: {rows / total_ops:.1f} rows per op; one feed transaction (3 rows + meta, "
          f"synchronous=FULL) {feed * 1e3:.2f} ms; about 3 transactions per op")
    print(f"rebuild after a crash: {replay * 1e3:.0f} ms for {total_ops} ops "
          f"({replay / total_ops * 1e6:.0f} us per op, {rebuilt.replay.fed} events replayed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
