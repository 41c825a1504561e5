"""The daemon's socket: an asyncio Unix-socket server that speaks `wire` to a `Handler`.

What the transport guarantees, so that the handler (the daemon proper) need not:

- Socket safety. The socket lives in a directory of mode 0700 owned by us (created so,
  or refused); the socket file is 0600; peers of another uid are refused (SO_PEERCRED).
- Framing. Lines longer than `max_line` are discarded as they stream in (memory stays
  bounded) and answered `too_large`; the connection goes on. Every line gets exactly one
  reply, in order; a refused line gets an `error` whose `id` is the line's id if readable.
- Identity. Nothing but `hello` is served before a hello the handler accepted; the
  connection's role and agent name are fixed by that hello and cannot change; a request
  naming another agent is `forbidden` unless the sender is an admin; each role may send
  only the request types `wire.ALLOWED` lists.
- Isolation. A handler exception becomes an `internal` error reply (a CoagentError keeps
  its own code); it never ends the server or touches other connections.
- Disconnects. When a peer goes away the request it has in flight is cancelled (handlers
  shield what must not be interrupted) and then `handler.disconnected(conn)` is called,
  exactly once per authenticated connection, also at server shutdown.
- Events. `EventHub.publish` fans events out to subscribers through bounded queues; a
  subscriber that falls `queue` events behind loses its backlog and gets one fresh
  `snapshot` event instead (see `Subscription`), so memory per subscriber is bounded.

Requests on one connection are handled one at a time, in order; use several
connections for concurrency. A client must keep its write side open until it has read
its replies: end-of-file means "the client is gone".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import stat
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from coagent_cli.daemon import (
    ALREADY_AUTHENTICATED,
    BAD_VERSION,
    FORBIDDEN,
    INTERNAL,
    MAX_LINE,
    NOT_AUTHENTICATED,
    PEER_REFUSED,
    PROTOCOL_VERSION,
    TOO_LARGE,
)
from coagent_cli.daemon import wire
from coagent_cli.errors import CoagentError, ProtocolError, UsageError, WireError

log = logging.getLogger(__name__)

__all__ = [
    "Connection", "Handler", "Server", "serve", "EventHub", "Subscription", "PeerCred",
    "check_peer", "peer_cred", "prepare_run_dir", "FakeHandler",
]

_CHUNK = 64 * 1024
_ACCEPT_BATCH = 64
_ACCEPT_BACKOFF = 0.1
_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}

# ---------------------------------------------------------------- peer credentials


@dataclass(frozen=True, slots=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def parse_ucred(raw: bytes) -> PeerCred:
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCred(pid, uid, gid)


def peer_cred(sock: socket.socket) -> PeerCred | None:
    """The peer's pid/uid/gid, or None where SO_PEERCRED does not exist (non-Linux;
    there the 0700 directory is the only guard)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    return parse_ucred(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))


def check_peer(peer_uid: int, own_uid: int) -> None:
    """Refuse a peer running under another uid. Root gets no exception: a daemon run
    by a user should not take orders from root-owned processes it did not expect."""
    if peer_uid != own_uid:
        raise WireError(f"peer uid {peer_uid} is not the daemon's uid {own_uid}", code=PEER_REFUSED)


# ---------------------------------------------------------------- run directory


def prepare_run_dir(directory: Path) -> None:
    """Create `directory` with mode 0700, or accept it only if it already is a real
    directory of mode 0700 owned by us. Its parents are created with default modes."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=0o700)
        os.chmod(directory, 0o700)  # mkdir's mode is masked by the umask
    except FileExistsError:
        pass
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{directory} is not a directory", code="unsafe_run_dir")
    if info.st_uid != os.geteuid():
        raise UsageError(f"{directory} is owned by uid {info.st_uid}, not us", code="unsafe_run_dir")
    if stat.S_IMODE(info.st_mode) != 0o700:
        mode = oct(stat.S_IMODE(info.st_mode))
        raise UsageError(f"{directory} has mode {mode}, want 0o700", code="unsafe_run_dir")


def _bind_socket(path: Path) -> socket.socket:
    prepare_run_dir(path.parent)
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)  # the 0700 directory already keeps others out meanwhile
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {path}: {exc}", code="socket_unavailable") from exc
    sock.setblocking(False)
    return sock


def _remove_stale_socket(path: Path) -> None:
    """A socket file left by a dead daemon is removed; a live daemon's is refused."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise UsageError(f"{path} exists and is not a socket", code="socket_unavailable")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise UsageError(f"a daemon already listens on {path}", code="socket_unavailable")


# ---------------------------------------------------------------- framing


class _TooLarge:
    """Marker: a line longer than the limit was read and thrown away."""


TOO_LARGE_LINE = _TooLarge()


class LineReader:
    """Splits a byte stream into lines of at most `max_line` bytes. Longer lines are
    dropped while they stream in (never held whole) and reported as TOO_LARGE_LINE."""

    def __init__(self, reader: asyncio.StreamReader, max_line: int) -> None:
        self._reader = reader
        self._max = max_line
        self._buf = bytearray()
        self._discarding = False

    async def next(self) -> bytes | _TooLarge | None:
        """The next line (newline stripped), TOO_LARGE_LINE, or None at end of input."""
        while True:
            line = self._take_line()
            if line is not None:
                return line
            chunk = await self._reader.read(_CHUNK)
            if not chunk:
                return None  # an unterminated last line is dropped: nobody waits for it
            self._buf += chunk

    def _take_line(self) -> bytes | _TooLarge | None:
        end = self._buf.find(b"\n")
        if end < 0:
            if self._discarding or len(self._buf) > self._max:
                self._discarding = True
                self._buf.clear()
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        if self._discarding or len(line) > self._max:
            self._discarding = False
            return TOO_LARGE_LINE
        return line


# ---------------------------------------------------------------- events


_RESYNC = object()


class Subscription:
    """One subscriber's bounded queue of encoded events.

    Overflow policy: when an event arrives and `maxsize` events already wait, the whole
    backlog is dropped and a resync is pending; events published until the subscriber
    reads again are dropped too (counted in `dropped`). Its next read is one `snapshot`
    event built at that moment, so it carries everything the dropped events said. The
    queue never holds more than `maxsize` events."""

    def __init__(self, hub: "EventHub", maxsize: int) -> None:
        self._hub = hub
        self.maxsize = maxsize
        self._queue: deque[bytes] = deque()
        self._resync = True       # every stream starts with a snapshot
        self.dropped = 0          # events replaced by the pending snapshot
        self.total_dropped = 0
        self._ready = asyncio.Event()
        self._ready.set()

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, line: bytes) -> None:
        if self._resync:
            self._drop(1)
        elif len(self._queue) >= self.maxsize:
            self._drop(len(self._queue) + 1)
            self._queue.clear()
            self._resync = True
        else:
            self._queue.append(line)
        self._ready.set()

    def _drop(self, count: int) -> None:
        self.dropped += count
        self.total_dropped += count

    async def next(self) -> bytes:
        """The next encoded event line; waits until there is one."""
        while not (self._resync or self._queue):
            self._ready.clear()
            await self._ready.wait()
        if self._resync:
            self._resync = False
            line = wire.encode(self._hub.snapshot_event(self.dropped))
            self.dropped = 0
            return line
        return self._queue.popleft()


class EventHub:
    """Fan-out of daemon events to subscribers. The daemon calls `publish`; it never
    blocks and costs one encoding per event whatever the number of subscribers."""

    def __init__(self, *, maxsize: int = 256, snapshot: Callable[[], wire.Snapshot] | None = None) -> None:
        self.maxsize = maxsize
        self.snapshot = snapshot
        self.seq = 0
        self._subs: set[Subscription] = set()

    def publish(self, event: wire.Event) -> wire.Event:
        """Number the event, queue it for every subscriber, and return it numbered."""
        self.seq += 1
        event = event.model_copy(update={"seq": self.seq})
        if self._subs:
            line = wire.encode(event)
            for sub in self._subs:
                sub.offer(line)
        return event

    def snapshot_event(self, dropped: int) -> wire.Event:
        snap = self.snapshot() if self.snapshot is not None else None
        return wire.Event(seq=self.seq, kind="snapshot", snapshot=snap, dropped=dropped)

    def attach(self) -> Subscription:
        sub = Subscription(self, self.maxsize)
        self._subs.add(sub)
        return sub

    def detach(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)


# ---------------------------------------------------------------- connections and handler


class Connection:
    """One client connection as the handler sees it. Role and agent are fixed by the
    accepted hello and read-only afterwards; handlers key their per-connection state
    on the Connection object itself (hashable by identity)."""

    def __init__(self, number: int, peer: PeerCred | None) -> None:
        self.number = number
        self.peer = peer
        self._role: wire.Role | None = None
        self._agent: str | None = None
        self.subscription: Subscription | None = None

    @property
    def authenticated(self) -> bool:
        return self._role is not None

    @property
    def role(self) -> wire.Role | None:
        return self._role

    @property
    def agent(self) -> str | None:
        return self._agent

    def _bind(self, role: wire.Role, agent: str | None) -> None:
        assert self._role is None, "identity is fixed once"
        self._role, self._agent = role, agent

    def __repr__(self) -> str:
        who = self._agent or self._role or "anonymous"
        return f"<Connection #{self.number} {who}>"


class Handler(Protocol):
    """The daemon behind the socket. Refuse anything by raising a CoagentError (its
    `code` goes on the wire); any other exception is reported as `internal`."""

    async def authenticate(self, conn: Connection, hello: wire.Hello) -> wire.HelloReply:
        """Check the hello's token for its role/agent; the version is checked already."""
        ...

    async def handle(self, conn: Connection, request: wire.Request) -> wire.Response:
        """Answer one request of an authenticated connection with `wire.REPLY_FOR` of
        its type. Returning ShutdownReply makes the server shut down after sending it."""
        ...

    async def disconnected(self, conn: Connection) -> None:
        """The peer is gone (or the server stops): roll back, release latches."""
        ...

    def snapshot(self) -> wire.Snapshot:
        """The state right now (for status and for subscribers' snapshot events)."""
        ...


# ---------------------------------------------------------------- server


class Server:
    """Listens on `socket_path` and serves connections until `close()` or until the
    handler answers a shutdown request. Use as `async with Server(...) as server:`.

    Accepting is done here rather than by asyncio.start_unix_server: in Python 3.11 a
    connection accepted in the same loop turn as Server.close() leaks its socket (the
    half-built transport asserts in Server._attach). Owning the accept step lets close()
    wait for every accepted socket to be adopted or closed."""

    def __init__(self, socket_path: str | os.PathLike[str], handler: Handler, *,
                 hub: EventHub | None = None, max_line: int = MAX_LINE, grace: float = 5.0) -> None:
        self.path = Path(socket_path)
        self.handler = handler
        self.hub = hub if hub is not None else EventHub()
        if self.hub.snapshot is None:
            self.hub.snapshot = handler.snapshot
        self.max_line = max_line
        self.grace = grace  # seconds in-flight requests get at shutdown before cancellation
        self._listener: socket.socket | None = None
        self._inode: int | None = None
        self._adopting: set[asyncio.Task[None]] = set()
        self._sessions: dict[Connection, _Session] = {}
        self._numbers = 0
        self._closed = asyncio.Event()
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None

    async def start(self) -> "Server":
        self._listener = _bind_socket(self.path)
        self._inode = os.stat(self.path).st_ino
        asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept_ready)
        return self

    async def __aenter__(self) -> "Server":
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connections(self) -> list[Connection]:
        return list(self._sessions)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def request_shutdown(self) -> None:
        """Start a graceful shutdown without waiting for it (safe from a handler)."""
        if self._close_task is None and not self._closing:
            self._close_task = asyncio.get_running_loop().create_task(self.close())

    async def close(self) -> None:
        """Stop listening, remove the socket, let in-flight requests finish for up to
        `grace` seconds, then end every connection (each gets `disconnected`)."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._stop_listening()
        await asyncio.gather(*self._adopting, return_exceptions=True)
        await self._end_sessions()
        self._closed.set()

    def _stop_listening(self) -> None:
        if self._listener is None:
            return
        asyncio.get_running_loop().remove_reader(self._listener.fileno())
        self._listener.close()
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self._inode:  # not a newer daemon's socket
                os.unlink(self.path)

    async def _end_sessions(self) -> None:
        sessions = list(self._sessions.values())
        for session in sessions:
            session.stop_when_idle()
        busy = [s.task for s in sessions if not s.task.done()]
        if busy:
            await asyncio.wait(busy, timeout=self.grace)
        for session in sessions:
            session.task.cancel()
        await asyncio.gather(*(s.task for s in sessions), return_exceptions=True)
        for session in sessions:  # a task cancelled before it started never closed its end
            session.writer.close()

    def _accept_ready(self) -> None:
        assert self._listener is not None
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: back off instead of spinning
                log.warning("accept failed: %s; pausing for %.1fs", exc, _ACCEPT_BACKOFF)
                self._pause_accepting()
                return
            task = asyncio.get_running_loop().create_task(self._adopt(sock))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    def _pause_accepting(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._listener.fileno())
        loop.call_later(_ACCEPT_BACKOFF, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if not self._closing and self._listener is not None:
            asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept_ready)

    async def _adopt(self, sock: socket.socket) -> None:
        """Wrap an accepted socket in streams and start its session (or close it)."""
        peer = _peer_of(sock)
        try:
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        if self._closing:
            writer.close()
            return
        self._numbers += 1
        session = _Session(self, self._numbers, peer, reader, writer)
        self._sessions[session.conn] = session
        session.task.add_done_callback(lambda _: self._sessions.pop(session.conn, None))


class _Session:
    """The life of one connection: a reader task feeding lines, this task answering."""

    def __init__(self, server: Server, number: int, peer: PeerCred | None,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.handler = server.handler
        self.writer = writer
        self.lines = LineReader(reader, server.max_line)
        self.conn = Connection(number, peer)
        self._inbox: asyncio.Queue[bytes | _TooLarge | None] = asyncio.Queue(maxsize=8)
        self._busy = False
        self._stop = False
        self._finishing = False
        self._pump: asyncio.Task[None] | None = None
        self.task = asyncio.get_running_loop().create_task(self.run())

    def stop_when_idle(self) -> None:
        self._stop = True
        if not self._busy and not self._finishing:
            self.task.cancel()

    async def run(self) -> None:
        reader_task = asyncio.create_task(self._read_lines())
        try:
            if await self._admit_peer():
                await self._answer_lines()
        except asyncio.CancelledError:
            pass  # peer gone mid-request, or server shutdown: clean up below
        except (ConnectionError, OSError) as exc:
            log.debug("%r: connection lost: %s", self.conn, exc)
        finally:
            self._finishing = True
            reader_task.cancel()
            await self._finish(reader_task)

    async def _admit_peer(self) -> bool:
        peer = self.conn.peer
        try:
            if peer is not None:
                check_peer(peer.uid, os.geteuid())
        except WireError as exc:
            await self._send(wire.error_reply(exc.code, exc.message))
            return False
        return True

    async def _read_lines(self) -> None:
        """Reads ahead of the answering task so that end-of-file is noticed while a
        request is in flight; then the request is cancelled."""
        try:
            while True:
                line = await self.lines.next()
                if line is None:
                    break
                await self._inbox.put(line)
        except (ConnectionError, OSError):
            pass
        if self._busy:
            self.task.cancel()
        else:
            await self._inbox.put(None)

    async def _answer_lines(self) -> None:
        while not self._stop:
            line = await self._inbox.get()
            if line is None:
                return
            self._busy = True
            reply = await self._answer(line)
            self._busy = False
            await self._send(reply)
            if isinstance(reply, wire.Subscribed):
                self._start_pump()
            if isinstance(reply, wire.ShutdownReply):
                self.server.request_shutdown()

    async def _answer(self, line: bytes | _TooLarge) -> wire.WireModel:
        if isinstance(line, _TooLarge):
            return wire.error_reply(TOO_LARGE, f"request line exceeds {self.server.max_line} bytes")
        try:
            request = wire.parse_request(line, max_line=self.server.max_line)
        except WireError as exc:
            return wire.error_reply(exc.code, exc.message, wire.guess_request_id(line))
        try:
            reply = await self._dispatch(request)
        except CoagentError as exc:
            reply = _error_from(exc)
        except Exception as exc:  # a handler bug must not end the server; it is logged
            log.exception("%r: handler failed on %s", self.conn, request.type)
            reply = wire.error_reply(INTERNAL, f"internal error: {type(exc).__name__}")
        return _with_id(reply, request.id)

    async def _dispatch(self, request: wire.Request) -> wire.WireModel:
        conn = self.conn
        if isinstance(request, wire.Hello):
            return await self._hello(request)
        if not conn.authenticated:
            raise WireError("send hello first", code=NOT_AUTHENTICATED)
        _check_allowed(conn, request)
        reply = await self.handler.handle(conn, request)
        return _checked(request, reply)

    async def _hello(self, hello: wire.Hello) -> wire.WireModel:
        if self.conn.authenticated:
            raise WireError(f"already authenticated as {self.conn!r}", code=ALREADY_AUTHENTICATED)
        if hello.protocol != PROTOCOL_VERSION:
            raise WireError(f"protocol {hello.protocol} unsupported; this daemon speaks "
                            f"{PROTOCOL_VERSION}", code=BAD_VERSION)
        reply = _checked(hello, await self.handler.authenticate(self.conn, hello))
        self.conn._bind(hello.role, hello.agent)
        return reply.model_copy(update={"role": hello.role, "agent": hello.agent,
                                        "protocol": PROTOCOL_VERSION, "session": self.conn.number})

    def _start_pump(self) -> None:
        if self.conn.subscription is None:
            self.conn.subscription = self.server.hub.attach()
            self._pump = asyncio.create_task(self._pump_events(self.conn.subscription))

    async def _pump_events(self, sub: Subscription) -> None:
        try:
            while True:
                self.writer.write(await sub.next())
                await self.writer.drain()  # a slow reader stalls here; its queue absorbs
        except (ConnectionError, OSError):
            pass
        except Exception:  # e.g. handler.snapshot failed: end this stream, not the server
            log.exception("%r: event stream failed", self.conn)

    async def _send(self, message: wire.WireModel) -> None:
        self.writer.write(wire.encode(message))
        await self.writer.drain()

    async def _finish(self, reader_task: asyncio.Task[None]) -> None:
        conn = self.conn
        if conn.subscription is not None:
            self.server.hub.detach(conn.subscription)
        if self._pump is not None:
            self._pump.cancel()
        await asyncio.gather(reader_task, *filter(None, [self._pump]), return_exceptions=True)
        try:
            if conn.authenticated:  # shielded: a shutdown must not cut the rollback short
                await asyncio.shield(self.handler.disconnected(conn))
        except Exception:  # reported, never allowed to take the server down
            log.exception("%r: handler.disconnected failed", conn)
        finally:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()


def _peer_of(sock: socket.socket) -> PeerCred | None:
    try:
        return peer_cred(sock)
    except OSError:
        return None


def _check_allowed(conn: Connection, request: wire.Request) -> None:
    assert conn.role is not None
    if request.type not in wire.ALLOWED[conn.role]:
        raise WireError(f"a {conn.role} may not send {request.type}", code=FORBIDDEN)
    named = getattr(request, "agent", None)
    if named is not None and conn.role != "admin" and named != conn.agent:
        raise WireError(f"{conn.agent} may not act for agent {named}", code=FORBIDDEN)


def _checked(request: wire.WireModel, reply: object) -> wire.WireModel:
    wanted = wire.REPLY_FOR[type(request)]
    if not isinstance(reply, (wanted, wire.ErrorReply)):
        raise TypeError(f"handler answered {request.type} with {type(reply).__name__}")  # type: ignore[attr-defined]
    return reply


def _error_from(exc: CoagentError) -> wire.ErrorReply:
    try:
        return wire.error_reply(exc.code, exc.message)
    except ValueError:  # a code that is not snake_case cannot go on the wire as is
        return wire.error_reply(INTERNAL, f"{exc.code}: {exc.message}")


def _with_id(reply: wire.WireModel, request_id: int | str | None) -> wire.WireModel:
    if getattr(reply, "id", None) == request_id:
        return reply
    return reply.model_copy(update={"id": request_id})


async def serve(socket_path: str | os.PathLike[str], handler: Handler, *,
                hub: EventHub | None = None, max_line: int = MAX_LINE) -> None:
    """Serve until a shutdown request is answered or the task is cancelled."""
    async with Server(socket_path, handler, hub=hub, max_line=max_line) as server:
        await server.wait_closed()


# ---------------------------------------------------------------- fake handler


class FakeHandler:
    """An in-memory stand-in for the daemon, for tests, demos and the wire benchmark.

    Agents are given as {name: token}; ranks follow their order. Every begin_op is
    granted `run`; end_op of an op that is not the caller's open op is refused with
    `unknown_op`; notices can be queued with `notify`. Nothing touches the disk."""

    def __init__(self, agents: dict[str, str], *, admin_token: str | None = None,
                 monitor_token: str | None = None, hub: EventHub | None = None) -> None:
        self.tokens = dict(agents)
        self.ranks = {name: rank for rank, name in enumerate(agents)}
        self.admin_token = admin_token or secrets.token_hex(16)
        self.monitor_token = monitor_token or secrets.token_hex(16)
        self.hub = hub
        self.states: dict[str, wire.AgentState] = {name: "registered" for name in agents}
        self.open_ops: dict[Connection, set[int]] = {}
        self.ops: dict[int, wire.OpInfo] = {}
        self.inboxes: dict[str, list[wire.Notice]] = {name: [] for name in agents}
        self.disconnects: list[Connection] = []
        self._next_op = 0
        self._next_notice = 0

    async def authenticate(self, conn: Connection, hello: wire.Hello) -> wire.HelloReply:
        wanted = {"admin": self.admin_token, "monitor": self.monitor_token}.get(hello.role)
        if hello.role == "agent":
            wanted = self.tokens.get(hello.agent or "")
        if wanted is None or not secrets.compare_digest(wanted.encode(), hello.token.encode()):
            raise WireError("unknown agent or wrong token", code="bad_token")
        if hello.agent is not None:
            self.states[hello.agent] = "running"
            self._publish("agent_joined", agent=hello.agent)
        return wire.HelloReply(rank=self.ranks.get(hello.agent or ""))

    async def handle(self, conn: Connection, request: wire.Request) -> wire.Response:
        method = getattr(self, "_on_" + request.type)
        return await method(conn, request)

    async def disconnected(self, conn: Connection) -> None:
        self.disconnects.append(conn)
        for op in self.open_ops.pop(conn, set()):
            self.ops[op] = self.ops[op].model_copy(update={"state": "undone"})

    def snapshot(self) -> wire.Snapshot:
        agents = [wire.AgentInfo(name=n, rank=self.ranks[n], state=self.states[n],
                                 pending_notices=len(self.inboxes[n])) for n in self.tokens]
        return wire.Snapshot(cc="none", agents=agents, ops=list(self.ops.values())[-50:])

    def notify(self, agent: str, key: str, by: str, detail: str = "") -> wire.Notice:
        self._next_notice += 1
        notice = wire.Notice(id=self._next_notice, key=key, kind="stale_read", by=by, detail=detail)
        self.inboxes[agent].append(notice)
        return notice

    async def _on_begin_op(self, conn: Connection, req: wire.BeginOp) -> wire.OpGranted:
        assert conn.agent is not None
        self._next_op += 1
        summary = req.command if req.command is not None else f"{req.tool.tool}(...)"  # type: ignore[union-attr]
        self.ops[self._next_op] = wire.OpInfo(op=self._next_op, agent=conn.agent, state="running",
                                              summary=summary[:200])
        self.open_ops.setdefault(conn, set()).add(self._next_op)
        self._publish("op_begun", agent=conn.agent, op=self._next_op)
        return wire.OpGranted(op=self._next_op, action="run")

    async def _on_end_op(self, conn: Connection, req: wire.EndOp) -> wire.OpEnded:
        if req.op not in self.open_ops.get(conn, set()):
            raise ProtocolError(f"op {req.op} is not open on this connection", code="unknown_op")
        self.open_ops[conn].discard(req.op)
        self.ops[req.op] = self.ops[req.op].model_copy(update={"state": "done"})
        self._publish("op_ended", agent=conn.agent, op=req.op)
        return wire.OpEnded(op=req.op, pending_notices=len(self.inboxes[conn.agent or ""]))

    async def _on_read(self, conn: Connection, req: wire.Read) -> wire.ReadReply:
        return wire.ReadReply(key=req.key or "tool", exists=False)

    async def _on_inbox(self, conn: Connection, req: wire.Inbox) -> wire.InboxReply:
        box = self.inboxes[conn.agent or ""]
        notices = list(box)
        if not req.peek:
            box.clear()
        return wire.InboxReply(notices=notices)

    async def _on_finish(self, conn: Connection, req: wire.Finish) -> wire.FinishReply:
        agent = conn.agent or ""
        if self.inboxes[agent]:
            return wire.FinishReply(finished=False, notices=list(self.inboxes[agent]))
        self.states[agent] = "finished"
        self._publish("agent_finished", agent=agent)
        return wire.FinishReply(finished=True)

    async def _on_resume(self, conn: Connection, req: wire.Resume) -> wire.ResumeReply:
        agent = req.agent or conn.agent
        if agent not in self.states:
            raise WireError(f"no agent {agent}", code="unknown_agent")
        self.states[agent] = "running"
        return wire.ResumeReply(agent=agent, notices=list(self.inboxes[agent]))

    async def _on_status(self, conn: Connection, req: wire.Status) -> wire.StatusReply:
        return wire.StatusReply(snapshot=self.snapshot())

    async def _on_subscribe(self, conn: Connection, req: wire.Subscribe) -> wire.Subscribed:
        return wire.Subscribed(queue=self.hub.maxsize if self.hub else 0)

    async def _on_shutdown(self, conn: Connection, req: wire.Shutdown) -> wire.ShutdownReply:
        return wire.ShutdownReply()

    async def _on_retract(self, conn: Connection, req: wire.Retract) -> wire.RetractReply:
        mine = [op for op, info in self.ops.items() if info.agent == req.agent]
        chosen = mine if req.ops == "all" else [op for op in req.ops if op in mine]
        for op in chosen:
            self.ops[op] = self.ops[op].model_copy(update={"state": "undone"})
        return wire.RetractReply(agent=req.agent, ops=chosen)

    def _publish(self, kind: wire.EventKind, **fields: object) -> None:
        if self.hub is not None:
            self.hub.publish(wire.Event(kind=kind, **fields))  # type: ignore[arg-type]

