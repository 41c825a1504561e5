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

This module holds the `Server`; the parts live beside it and are re-exported here:
`socket_safety` (run directory, socket file, peer uid), `framing` (bounded lines),
`events` (EventHub), `connection` (Connection, Handler), `session` (one connection's
life) and `fake` (FakeHandler).

Requests on one connection are handled one at a time, in order; use several
connections for concurrency. A client must keep its write side open until it has read
its replies: end-of-file means "the client is gone".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path

from coagent_cli.daemon import MAX_LINE
from coagent_cli.daemon.connection import Connection, Handler
from coagent_cli.daemon.events import EventHub, Subscription
from coagent_cli.daemon.fake import FakeHandler
from coagent_cli.daemon.framing import TOO_LARGE_LINE, LineReader
from coagent_cli.daemon.session import Session
from coagent_cli.daemon.socket_safety import (
    PeerCred,
    bind_socket,
    check_peer,
    parse_ucred,
    peer_cred,
    peer_of,
    prepare_run_dir,
)

log = logging.getLogger(__name__)

__all__ = [
    "Connection", "Handler", "Server", "serve", "EventHub", "Subscription", "PeerCred",
    "check_peer", "peer_cred", "prepare_run_dir", "FakeHandler",
    "parse_ucred", "LineReader", "TOO_LARGE_LINE",
]

_ACCEPT_BATCH = 64
_ACCEPT_BACKOFF = 0.1


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
        self._sessions: dict[Connection, Session] = {}
        self._numbers = 0
        self._closed = asyncio.Event()
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None

    async def start(self) -> "Server":
        self._listener = bind_socket(self.path)
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
        peer = peer_of(sock)
        try:
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        if self._closing:
            writer.close()
            return
        self._numbers += 1
        session = Session(self, self._numbers, peer, reader, writer)
        self._sessions[session.conn] = session
        session.task.add_done_callback(lambda _: self._sessions.pop(session.conn, None))


async def serve(socket_path: str | os.PathLike[str], handler: Handler, *,
                hub: EventHub | None = None, max_line: int = MAX_LINE) -> None:
    """Serve until a shutdown request is answered or the task is cancelled."""
    async with Server(socket_path, handler, hub=hub, max_line=max_line) as server:
        await server.wait_closed()
