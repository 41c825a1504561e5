"""The socket server against an in-memory handler: socket safety, authentication,
identity, error isolation, disconnects, bounded subscribers, and a 2,000-message fuzz."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from coagent_cli.daemon import MAX_LINE, PROTOCOL_VERSION, wire
from coagent_cli.daemon.client import AsyncClient, Client, RemoteError
from coagent_cli.daemon.transport import (
    Connection,
    EventHub,
    FakeHandler,
    Server,
    check_peer,
    parse_ucred,
    prepare_run_dir,
)
from coagent_cli.errors import UsageError, WireError

pytestmark = pytest.mark.timeout(30)

AGENTS = {"alice": "tok-alice", "bob": "tok-bob"}
ADMIN = "tok-admin"
MONITOR = "tok-monitor"


class TestHandler(FakeHandler):
    """The package's fake plus test hooks: command `block` waits forever (until
    cancelled), `boom` raises a plain bug, `wrong` answers with the wrong reply type."""

    __test__ = False

    def __init__(self, hub: EventHub) -> None:
        super().__init__(AGENTS, admin_token=ADMIN, monitor_token=MONITOR, hub=hub)
        self.cancelled = 0

    async def handle(self, conn: Connection, request: wire.Request) -> wire.Response:
        command = getattr(request, "command", None)
        if command == "boom":
            raise RuntimeError("a handler bug")
        if command == "wrong":
            return wire.InboxReply()  # not the reply a begin_op needs
        if command == "block":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return await super().handle(conn, request)


class ServerThread:
    """A Server on its own event loop in a background thread."""

    def __init__(self, path: Path, *, queue: int = 256) -> None:
        self.path = path
        self.hub = EventHub(maxsize=queue)
        self.handler = TestHandler(self.hub)
        self.server: Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> "ServerThread":
        self._thread.start()
        assert self._ready.wait(10), "server did not start"
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            self.server = await Server(self.path, self.handler, hub=self.hub, grace=1.0).start()
        except BaseException as exc:  # reported to the test thread by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self.server.wait_closed()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the server's loop and return its result."""
        async def run() -> Any:
            return fn()
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self) -> None:
        if self.loop is not None and self.server is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self._thread.join(10)
        assert not self._thread.is_alive()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="cg"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def srv(short_dir: Path) -> Iterator[ServerThread]:
    server = ServerThread(short_dir / "run" / "d.sock").start()
    yield server
    server.stop()


def agent(srv: ServerThread, name: str = "alice") -> Client:
    client = Client(srv.path, timeout=10)
    client.hello(agent=name, token=AGENTS[name])
    return client


def refused(fn: Callable[[], Any]) -> str:
    with pytest.raises(RemoteError) as info:
        fn()
    return info.value.code


# ---------------------------------------------------------------- socket safety


def test_run_dir_is_0700_and_socket_0600(srv: ServerThread) -> None:
    assert stat.S_IMODE(os.stat(srv.path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(srv.path).st_mode)


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701])
def test_existing_run_dir_with_loose_mode_is_refused(short_dir: Path, mode: int) -> None:
    run = short_dir / "run"
    run.mkdir()
    os.chmod(run, mode)
    with pytest.raises(UsageError) as info:
        prepare_run_dir(run)
    assert info.value.code == "unsafe_run_dir"


def test_run_dir_that_is_a_symlink_or_file_is_refused(short_dir: Path) -> None:
    (short_dir / "real").mkdir(mode=0o700)
    (short_dir / "link").symlink_to(short_dir / "real")
    (short_dir / "file").write_text("x")
    for name in ("link", "file"):
        with pytest.raises(UsageError):
            prepare_run_dir(short_dir / name)


def test_existing_private_dir_is_accepted(short_dir: Path) -> None:
    (short_dir / "run").mkdir(mode=0o700)
    prepare_run_dir(short_dir / "run")


def test_stale_socket_is_replaced_and_live_one_refused(short_dir: Path) -> None:
    path = short_dir / "run" / "d.sock"
    prepare_run_dir(path.parent)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a dead daemon's socket file
    first = ServerThread(path).start()
    try:
        with pytest.raises(UsageError) as info:
            ServerThread(path).start()
        assert info.value.code == "socket_unavailable"
    finally:
        first.stop()
    assert not path.exists()


def test_peer_uid_check_is_a_pure_function() -> None:
    check_peer(1000, 1000)
    with pytest.raises(WireError) as info:
        check_peer(1001, 1000)
    assert info.value.code == "peer_refused"
    with pytest.raises(WireError):
        check_peer(0, 1000)
    cred = parse_ucred(struct.pack("3i", 42, 1001, 1002))
    assert (cred.pid, cred.uid, cred.gid) == (42, 1001, 1002)


def test_server_sees_our_own_credentials(srv: ServerThread) -> None:
    with agent(srv):
        wait_until(lambda: len(srv.server.connections) == 1)  # type: ignore[union-attr]
        peer = srv.server.connections[0].peer  # type: ignore[union-attr]
    assert peer is not None and peer.uid == os.geteuid() and peer.pid == os.getpid()


# ---------------------------------------------------------------- authentication and identity


def test_requests_before_hello_are_refused(srv: ServerThread) -> None:
    with Client(srv.path, timeout=10) as c:
        assert refused(c.status) == "not_authenticated"
        assert refused(lambda: c.begin_op(command="ls", cwd="/")) == "not_authenticated"
        assert c.hello(agent="alice", token="tok-alice")["agent"] == "alice"
        assert c.status()["type"] == "status_reply"


def test_wrong_token_is_refused(srv: ServerThread) -> None:
    with Client(srv.path, timeout=10) as c:
        assert refused(lambda: c.hello(agent="alice", token="tok-bob")) == "bad_token"
        assert refused(lambda: c.hello(agent="mallory", token="x")) == "bad_token"
        assert refused(lambda: c.hello(role="admin", token=MONITOR)) == "bad_token"
        assert refused(c.status) == "not_authenticated"


def test_wrong_protocol_version_is_refused(srv: ServerThread) -> None:
    with Client(srv.path, timeout=10) as c:
        code = refused(lambda: c.request("hello", protocol=PROTOCOL_VERSION + 1,
                                         agent="alice", token="tok-alice"))
        assert code == "bad_version"


def test_identity_is_fixed_at_hello_and_spoofing_is_refused(srv: ServerThread) -> None:
    with agent(srv, "alice") as c:
        assert refused(lambda: c.hello(agent="bob", token="tok-bob")) == "already_authenticated"
        assert refused(lambda: c.retract("bob")) == "forbidden"
        assert refused(lambda: c.resume("bob")) == "forbidden"
        # a name smuggled into a message that has no such field is refused by the parser
        assert refused(lambda: c.request("begin_op", command="ls", cwd="/", agent="bob")) == "bad_message"
        grant = c.begin_op(command="touch a", cwd="/")
        assert srv.handler.ops[grant["op"]].agent == "alice"
        assert c.retract("alice")["ops"] == [grant["op"]]


def test_roles_may_send_only_their_requests(srv: ServerThread) -> None:
    with Client(srv.path, timeout=10) as mon:
        mon.hello(role="monitor", token=MONITOR)
        assert refused(lambda: mon.begin_op(command="ls", cwd="/")) == "forbidden"
        assert refused(mon.shutdown) == "forbidden"
        assert mon.status()["snapshot"]["agents"][0]["name"] == "alice"
    with agent(srv) as c:
        assert refused(c.shutdown) == "forbidden"
    with Client(srv.path, timeout=10) as admin:
        admin.hello(role="admin", token=ADMIN)
        assert admin.retract("bob", "all")["agent"] == "bob"


# ---------------------------------------------------------------- robustness


def test_handler_bug_becomes_internal_error_and_server_lives(srv: ServerThread) -> None:
    with agent(srv) as c, agent(srv, "bob") as other:
        assert refused(lambda: c.begin_op(command="boom", cwd="/")) == "internal"
        assert refused(lambda: c.begin_op(command="wrong", cwd="/")) == "internal"
        assert c.begin_op(command="ls", cwd="/")["action"] == "run"
        assert other.status()["type"] == "status_reply"


def test_oversized_line_is_answered_and_connection_keeps_working(srv: ServerThread) -> None:
    with agent(srv) as c:
        c.send_raw(b'{"type": "status", "pad": "' + b"x" * (MAX_LINE + 10) + b'"}\n')
        reply = c.receive_raw()
        assert (reply["type"], reply["code"]) == ("error", "too_large")
        assert c.status()["type"] == "status_reply"


def test_error_reply_echoes_a_readable_request_id(srv: ServerThread) -> None:
    with agent(srv) as c:
        c.send_raw(b'{"type": "end_op", "id": 77, "op": "x"}\n')
        reply = c.receive_raw()
        assert (reply["type"], reply["id"], reply["code"]) == ("error", 77, "bad_message")
        assert reply["message"].startswith("end_op.op: Input should be a valid integer")


def test_pipelined_requests_are_answered_in_order(srv: ServerThread) -> None:
    with agent(srv) as c:
        c.send_raw(b"".join(json.dumps({"type": "status", "id": i}).encode() + b"\n" for i in range(50)))
        assert [c.receive()["id"] for _ in range(50)] == list(range(50))


def test_disconnect_mid_request_cancels_it_and_calls_disconnected(srv: ServerThread) -> None:
    c = agent(srv)
    c.begin_op(command="ls", cwd="/")  # an op left open: the handler rolls it back
    c.send_raw(json.dumps({"type": "begin_op", "id": 9, "command": "block", "cwd": "/"}).encode() + b"\n")
    wait_until(lambda: any(info.summary == "ls" for info in srv.handler.ops.values()))
    time.sleep(0.05)  # let the blocking request reach the handler
    c.close()
    wait_until(lambda: len(srv.handler.disconnects) == 1)
    assert srv.handler.cancelled == 1
    assert srv.handler.disconnects[0].agent == "alice"
    assert [info.state for info in srv.handler.ops.values()] == ["undone"]
    with agent(srv, "bob") as other:  # the server is unharmed
        assert other.begin_op(command="ls", cwd="/")["op"] == 2


def test_shutdown_request_stops_server_and_removes_socket(srv: ServerThread) -> None:
    watcher = agent(srv, "bob")
    with Client(srv.path, timeout=10) as admin:
        admin.hello(role="admin", token=ADMIN)
        assert admin.shutdown()["type"] == "shutdown_reply"
    wait_until(lambda: not srv.path.exists())
    with pytest.raises(WireError) as info:
        watcher.status()
    assert info.value.code == "disconnected"
    watcher.close()
    wait_until(lambda: len(srv.handler.disconnects) == 2)
    with pytest.raises(WireError) as info:
        Client(srv.path, timeout=1)
    assert info.value.code == "unreachable"


# ---------------------------------------------------------------- async client


def test_async_client_round_trip_and_errors(srv: ServerThread) -> None:
    async def scenario() -> None:
        async with await AsyncClient.connect(srv.path, timeout=10) as c:
            hello = await c.hello(agent="bob", token="tok-bob")
            assert (hello.agent, hello.rank) == ("bob", 1)
            grant = await c.begin_op(tool="replace", params={"path": "a", "old": "x"}, cwd="/w")
            assert isinstance(grant, wire.OpGranted) and grant.action == "run"
            srv.call(lambda: srv.handler.notify("bob", "file:a", by="alice", detail="a changed"))
            ended = await c.end_op(grant.op, 0, 10)
            assert ended.pending_notices == 1
            with pytest.raises(RemoteError) as info:
                await c.end_op(grant.op, 0)
            assert info.value.code == "unknown_op"
            assert not (await c.finish()).finished
            notices = (await c.inbox()).notices
            assert [(n.key, n.by) for n in notices] == [("file:a", "alice")]
            assert (await c.finish()).finished
    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_async_subscriber_gets_snapshot_then_events(srv: ServerThread) -> None:
    async def scenario() -> list[wire.Event]:
        async with await AsyncClient.connect(srv.path, timeout=10) as mon:
            await mon.hello(role="monitor", token=MONITOR)
            stream = mon.subscribe()
            events = [await stream.__anext__()]
            await asyncio.to_thread(lambda: agent(srv).close())
            events.append(await stream.__anext__())
            await stream.aclose()
            return events
    first, second = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert first.kind == "snapshot" and first.snapshot is not None
    assert (second.kind, second.agent, second.seq) == ("agent_joined", "alice", first.seq + 1)


# ---------------------------------------------------------------- bounded subscribers


def test_subscription_queue_is_bounded_and_resyncs_with_a_snapshot() -> None:
    async def scenario() -> None:
        hub = EventHub(maxsize=8, snapshot=lambda: wire.Snapshot(cc="test"))
        sub = hub.attach()
        first = wire.parse_reply(await sub.next())
        assert first.kind == "snapshot" and first.dropped == 0
        for i in range(10_000):
            hub.publish(wire.Event(kind="op_begun", op=i + 1))
            assert len(sub) <= 8
        event = wire.parse_reply(await sub.next())
        assert (event.kind, event.seq, event.dropped) == ("snapshot", 10_000, 10_000)
        assert event.snapshot == wire.Snapshot(cc="test")
        hub.publish(wire.Event(kind="op_ended", op=1))
        after = wire.parse_reply(await sub.next())
        assert (after.kind, after.seq) == ("op_ended", 10_001)
        hub.detach(sub)
        assert hub.subscribers == 0
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_slow_subscriber_does_not_grow_memory(short_dir: Path) -> None:
    srv = ServerThread(short_dir / "run" / "d.sock", queue=16).start()
    try:
        raw = socket.socket(socket.AF_UNIX)
        raw.settimeout(10)
        raw.connect(str(srv.path))
        hello = {"type": "hello", "protocol": PROTOCOL_VERSION, "role": "monitor", "token": MONITOR}
        raw.sendall(json.dumps(hello).encode() + b"\n" + b'{"type": "subscribe"}\n')
        wait_until(lambda: srv.hub.subscribers == 1)
        # publish far more than the socket buffers hold; the subscriber never reads meanwhile
        subs = srv.call(lambda: list(srv.hub._subs))
        for _ in range(20):
            peak = srv.call(lambda: _publish_many(srv.hub, 2_000, subs[0]))
            assert peak <= 16
        assert subs[0].total_dropped > 0
        with raw, raw.makefile("rb") as stream:
            seen = _read_until_resync(stream, limit=100_000)
        assert seen["dropped"] > 0 and seen["snapshot"]["cc"] == "none"
    finally:
        srv.stop()


def _publish_many(hub: EventHub, count: int, sub: Any) -> int:
    peak = 0
    for _ in range(count):
        hub.publish(wire.Event(kind="op_begun", agent="alice", op=1, detail="x" * 64))
        peak = max(peak, len(sub))
    return peak


def _read_until_resync(stream: Any, limit: int) -> dict[str, Any]:
    for _ in range(limit):
        line = stream.readline()
        assert line, "stream ended before a resync snapshot"
        msg = json.loads(line)
        if msg.get("kind") == "snapshot" and msg.get("dropped", 0) > 0:
            return msg
    raise AssertionError("no resync snapshot")


# ---------------------------------------------------------------- fuzz


VALID_TEMPLATES: list[dict[str, Any]] = [
    {"type": "begin_op", "command": "ls", "cwd": "/w"},
    {"type": "begin_op", "tool": {"tool": "replace", "params": {}}, "cwd": "/w"},
    {"type": "end_op", "op": 1, "exit_status": 0, "output_size": 0},
    {"type": "read", "key": "file:a"},
    {"type": "inbox", "peek": True},
    {"type": "retract", "agent": "alice", "ops": [1]},
    {"type": "status"},
]
BAD_VALUES: dict[str, list[Any]] = {
    "command": [5, ["ls"], "", {"x": 1}], "cwd": [1, None, "", []],
    "op": ["1", 0, -1, 1.5, True, None, 2**64], "exit_status": [256, -1, "0", None, 0.0],
    "output_size": [-1, "9", 1e3], "key": ["", 5, None], "peek": ["yes", 1, None],
    "ops": ["some", [], [0], [-1], 5, ["1"]], "agent": ["", "a b", "../x", 5, "x" * 65],
    "tool": [{"tool": ""}, {"tool": "t", "params": []}, {"params": {}}, "replace"],
}


def _fuzz_case(rng: random.Random) -> tuple[bytes, set[str]]:
    """One line the server must refuse, and the codes it may refuse it with."""
    roll = rng.random()
    if roll < 0.15:
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b"")
        return junk or b"{", {"bad_json", "bad_message", "unknown_type"}
    if roll < 0.25:
        text = json.dumps(_mutated(rng))
        return text[: rng.randrange(len(text))].encode(), {"bad_json"}
    if roll < 0.32:
        value = rng.choice([1, "s", None, [1, {}], 2.5, True, [], "{}"])
        return json.dumps(value).encode(), {"bad_message"}
    if roll < 0.42:
        return json.dumps({"type": rng.choice(["", "HELLO", "exec", "event", "error", "x" * 90]),
                           "id": rng.randrange(1000)}).encode(), {"unknown_type"}
    if roll < 0.50:
        msg = dict(rng.choice(VALID_TEMPLATES), **{"zz" + str(rng.randrange(99)): 1})
        return json.dumps(msg).encode(), {"bad_message"}
    if roll < 0.51:
        return b'{"type": "status", "pad": "' + b"y" * (MAX_LINE + rng.randrange(1, 4096)) + b'"}', {"too_large"}
    if roll < 0.60:
        msg = {"type": "end_op", "op": rng.randrange(10_000, 2**40), "exit_status": 0}
        return json.dumps(msg).encode(), {"unknown_op"}
    if roll < 0.66:
        hello = {"type": "hello", "protocol": PROTOCOL_VERSION, "agent": rng.choice(["alice", "bob"]),
                 "token": rng.choice(["tok-bob", "tok-alice", "", "guess"])}
        return json.dumps(hello).encode(), {"already_authenticated", "bad_message"}
    if roll < 0.72:
        msg = rng.choice([{"type": "retract", "agent": "bob", "ops": "all"},
                          {"type": "resume", "agent": "bob"}, {"type": "shutdown"},
                          {"type": "subscribe"}])
        return json.dumps(msg).encode(), {"forbidden"}
    return json.dumps(_mutated(rng)).encode(), {"bad_message"}


def _mutated(rng: random.Random) -> dict[str, Any]:
    msg = dict(rng.choice(VALID_TEMPLATES[:-1]))  # every template but status has fields
    field = rng.choice([f for f in msg if f in BAD_VALUES])
    msg[field] = rng.choice(BAD_VALUES[field])
    return msg


def test_fuzz_every_malformed_message_gets_an_error_and_server_keeps_serving(srv: ServerThread) -> None:
    rng = random.Random(20240611)
    answered = 0
    with agent(srv, "alice") as victim:
        for n in range(2_000):
            line, codes = _fuzz_case(rng)
            victim.send_raw(line + b"\n")
            reply = victim.receive_raw()
            assert reply["type"] == "error" and reply["code"] in codes, (n, line[:200], reply)
            answered += 1
    for _ in range(60):  # fresh connections: wrong tokens, requests before hello
        with Client(srv.path, timeout=10) as stranger:
            assert refused(lambda: stranger.request(rng.choice(["status", "inbox", "finish"]))) == \
                "not_authenticated"
            name = rng.choice(["alice", "bob", "mallory"])
            token = rng.choice(["", "tok-" + name + "x", "tok-admin", str(rng.random())])
            code = refused(lambda n=name, t=token: stranger.request("hello", protocol=PROTOCOL_VERSION,
                                                                    agent=n, token=t))
            assert code in {"bad_token", "bad_message"}
            answered += 2
    assert answered >= 2_000 + 120
    with agent(srv, "bob") as good:  # a well-behaved agent is served correctly afterwards
        grant = good.begin_op(command="echo hi", cwd="/w")
        assert (grant["type"], grant["action"]) == ("op_granted", "run")
        assert good.end_op(grant["op"], 0, 3)["op"] == grant["op"]
        srv.call(lambda: srv.handler.notify("bob", "file:x", by="alice"))
        assert [n["key"] for n in good.inbox(peek=True)["notices"]] == ["file:x"]
        assert good.finish()["finished"] is False
        assert len(good.inbox()["notices"]) == 1
        assert good.finish()["finished"] is True
    assert srv.handler.states["bob"] == "finished"
