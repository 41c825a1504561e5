"""The life of one connection: framing, admission, identity, dispatch, event pump.

Every line gets exactly one reply, in order; nothing but `hello` is served before an
accepted hello; a handler exception becomes an error reply and never ends the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING

from coagent_cli.daemon import (
    ALREADY_AUTHENTICATED,
    BAD_VERSION,
    FORBIDDEN,
    INTERNAL,
    NOT_AUTHENTICATED,
    PROTOCOL_VERSION,
    TOO_LARGE,
)
from coagent_cli.daemon import wire
from coagent_cli.daemon.connection import Connection
from coagent_cli.daemon.events import Subscription
from coagent_cli.daemon.framing import LineReader, TooLarge
from coagent_cli.daemon.socket_safety import PeerCred, check_peer
from coagent_cli.errors import CoagentError, WireError

if TYPE_CHECKING:
    from coagent_cli.daemon.transport import Server

log = logging.getLogger(__name__)


class Session:
    """The life of one connection: a reader task feeding lines, this task answering."""

    def __init__(self, server: Server, number: int, peer: PeerCred | None,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.handler = server.handler
        self.writer = writer
        self.lines = LineReader(reader, server.max_line)
        self.conn = Connection(number, peer)
        self._inbox: asyncio.Queue[bytes | TooLarge | None] = asyncio.Queue(maxsize=8)
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

    async def _answer(self, line: bytes | TooLarge) -> wire.WireModel:
        if isinstance(line, TooLarge):
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
