"""Gate overhead per command line: a gated shell against the same shell ungated.

    python benchmarks/gate_overhead.py [--lines 500] [--spawns 100]

The daemon is the in-memory FakeHandler in a child process (no journal, no snapshots:
this isolates what the gate itself costs). Measured, p50/p99 in ms:
- GatedShell line round trip (`true`), ungated (no daemon: the rc installs no trap) vs
  gated (DEBUG trap + `history 1` + begin_op/end_op through the rc's helper);
- the same with a 3-command pipeline line, to show the gate is per line, not per command;
- `bash -c true` through the PATH shim vs the real bash (a process per line: what an
  external agent CLI pays).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from coagent_cli.shell.gated import GatedShell, find_real_shell, shim_environment

TOKEN = "bench-token"


def serve(path: str) -> None:
    from coagent_cli.daemon.transport import FakeHandler, Server

    async def main() -> None:
        async with Server(path, FakeHandler({"bench": TOKEN})) as server:
            await server.wait_closed()

    asyncio.run(main())


def start_daemon(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    path = str(directory / "run" / "d.sock")
    child = subprocess.Popen([sys.executable, __file__, "--serve", path])
    deadline = time.monotonic() + 10
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit("the daemon did not start")
        time.sleep(0.01)
    return child, path


def timed(action: Callable[[], object], count: int) -> list[float]:
    action()  # warm up
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def summary(label: str, samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"{label:<44} p50 {cuts[49] * 1e3:6.2f} ms   p99 {cuts[98] * 1e3:6.2f} ms"


def shell_lines(workspace: Path, env: dict[str, str], line: str, count: int) -> list[float]:
    with GatedShell(workspace, env) as shell:
        return timed(lambda: shell.run(line), count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--spawns", type=int, default=100)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="cgb"))
    daemon, path = start_daemon(directory)
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith("COAGENT_")}
        gated = {**base, "COAGENT_SOCKET": path, "COAGENT_AGENT": "bench", "COAGENT_TOKEN": TOKEN}
        for line in ("true", "echo a | tr a b | wc -c"):
            plain = shell_lines(directory, base, line, args.lines)
            gate = shell_lines(directory, gated, line, args.lines)
            print(summary(f"GatedShell `{line}` ungated", plain))
            print(summary(f"GatedShell `{line}` gated", gate))
            print(f"{'':<44} overhead p50 {(statistics.median(gate) - statistics.median(plain)) * 1e3:6.2f} ms")
        real = find_real_shell("bash")
        shimmed = shim_environment(gated)
        spawn = lambda env: subprocess.run(["bash", "-c", "true"], env=env, check=True)  # noqa: E731
        real_path = {**base, "PATH": os.path.dirname(real) + os.pathsep + base["PATH"]}
        print(summary("real `bash -c true` (process per line)", timed(lambda: spawn(real_path), args.spawns)))
        print(summary("shim `bash -c true` (gated, process per line)", timed(lambda: spawn(shimmed), args.spawns)))
    finally:
        daemon.terminate()
        daemon.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
