"""Round-trip cost of the daemon's wire layer, against the in-memory FakeHandler.

    python benchmarks/wire_latency.py [--requests N] [--clients 32]

The server runs in a child process (so client and server do not share a GIL). Measured:
- p50/p99 round trip of a trivial request (`inbox` with peek) with the sync client;
- p50/p99 of a begin_op + end_op pair (the cost a gated command pays, minus the journal);
- requests per second with `--clients` concurrent async clients, each on its own
  connection, each sending `inbox` (peek) back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coagent_cli.daemon.client import AsyncClient, Client

TOKEN = "bench-token"


def serve(path: str, clients: int) -> None:
    from coagent_cli.daemon.transport import EventHub, FakeHandler, Server

    agents = {f"a{i}": TOKEN for i in range(clients + 1)}

    async def main() -> None:
        hub = EventHub()
        async with Server(path, FakeHandler(agents, hub=hub), hub=hub) as server:
            await server.wait_closed()

    asyncio.run(main())


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49] * 1e6:7.1f} us   p99 {cuts[98] * 1e6:7.1f} us"


def sync_round_trips(path: str, count: int) -> tuple[list[float], list[float]]:
    status, ops = [], []
    with Client(path) as client:
        client.hello(agent="a0", token=TOKEN)
        for _ in range(count):
            start = time.perf_counter()
            client.inbox(peek=True)
            status.append(time.perf_counter() - start)
        for _ in range(count):
            start = time.perf_counter()
            grant = client.begin_op(command="true", cwd="/")
            client.end_op(grant["op"], 0)
            ops.append(time.perf_counter() - start)
    return status, ops


async def concurrent_rate(path: str, clients: int, per_client: int) -> float:
    conns = [await AsyncClient.connect(path) for _ in range(clients)]
    for i, conn in enumerate(conns):
        await conn.hello(agent=f"a{i + 1}", token=TOKEN)

    async def run(conn: AsyncClient) -> None:
        for _ in range(per_client):
            await conn.inbox(peek=True)

    start = time.perf_counter()
    await asyncio.gather(*(run(c) for c in conns))
    elapsed = time.perf_counter() - start
    for conn in conns:
        await conn.close()
    return clients * per_client / elapsed


def wait_for_socket(path: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the benchmark server did not start")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.clients)
    path = str(Path(tempfile.mkdtemp(dir="/tmp", prefix="cgb")) / "run" / "d.sock")
    child = subprocess.Popen([sys.executable, __file__, "--serve", path, "--clients", str(args.clients)])
    try:
        wait_for_socket(path, child)
        status, ops = sync_round_trips(path, args.requests)
        rate = asyncio.run(concurrent_rate(path, args.clients, max(1, args.requests // args.clients * 4)))
    finally:
        child.terminate()
        child.wait(10)
    print(f"inbox round trip (sync client)    {percentiles(status)}")
    print(f"begin_op + end_op (sync client)   {percentiles(ops)}")
    print(f"{args.clients} concurrent async clients   {rate:,.0f} requests/s")


if __name__ == "__main__":
    main()
