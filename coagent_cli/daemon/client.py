"""Clients of the daemon's socket.

`Client` is synchronous and uses only the standard library (no pydantic): the bash gate
runs a CLI command per command line, so importing this module must stay cheap. It sends
and returns plain dicts shaped as in `wire`. `AsyncClient` is for built-in agents and the
monitor; it speaks the typed `wire` models, imported when it is first used.

Both raise `RemoteError` (a WireError) carrying the server's `code` for an error reply,
and translate socket failures into WireError codes `unreachable`, `disconnected`,
`timeout` and `bad_reply` at this edge.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

from coagent_cli.daemon import (
    BAD_REPLY,
    DISCONNECTED,
    ENV_AGENT,
    ENV_SOCKET,
    ENV_TOKEN,
    MAX_REPLY_LINE,
    PROTOCOL_VERSION,
    TIMEOUT,
    UNREACHABLE,
)
from coagent_cli.errors import UsageError, WireError

if TYPE_CHECKING:
    from coagent_cli.daemon import wire

__all__ = ["RemoteError", "Client", "AsyncClient"]


class RemoteError(WireError):
    """The server answered a request with an error reply; `code` is the server's."""

    def __init__(self, message: str, *, code: str, request_id: int | str | None = None) -> None:
        super().__init__(message, code=code)
        self.request_id = request_id


def _hello_fields(agent: str | None, token: str, role: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "role": role, "token": token}
    if agent is not None:
        fields["agent"] = agent
    return fields


def _settings_from_env(env: Mapping[str, str]) -> tuple[str, str, str]:
    try:
        return env[ENV_SOCKET], env[ENV_AGENT], env[ENV_TOKEN]
    except KeyError as exc:
        raise UsageError(f"{exc.args[0]} is not set: not running under a coagent daemon",
                         code="no_daemon") from None


# ---------------------------------------------------------------- synchronous


class Client:
    """A blocking client on one connection; one request at a time.

        with Client.from_env() as c:          # connects and says hello
            grant = c.begin_op(command="ls", cwd=os.getcwd())
    """

    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float | None = 30.0) -> None:
        self._ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(os.fspath(socket_path))
        except OSError as exc:
            self._sock.close()
            raise WireError(f"cannot reach the daemon at {socket_path}: {exc}", code=UNREACHABLE) from None
        self._file = self._sock.makefile("rb")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, timeout: float | None = 30.0) -> "Client":
        """Connect to $COAGENT_SOCKET and hello as $COAGENT_AGENT with $COAGENT_TOKEN."""
        path, agent, token = _settings_from_env(env)
        client = cls(path, timeout=timeout)
        try:
            client.hello(agent=agent, token=token)
        except BaseException:
            client.close()
            raise
        return client

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def request(self, type: str, /, **fields: Any) -> dict[str, Any]:
        """Send one request and return its reply as a dict; RemoteError on an error reply."""
        rid = next(self._ids)
        self.send_raw(json.dumps({"type": type, "id": rid, **fields}).encode() + b"\n")
        reply = self.receive()
        if reply.get("id") != rid:
            raise WireError(f"reply id {reply.get('id')!r} does not answer request {rid}", code=BAD_REPLY)
        return reply

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (for tests and tools that speak the wire directly)."""
        try:
            self._sock.sendall(data)
        except socket.timeout:
            raise WireError("timed out sending to the daemon", code=TIMEOUT) from None
        except OSError as exc:
            raise WireError(f"lost the daemon: {exc}", code=DISCONNECTED) from None

    def receive(self) -> dict[str, Any]:
        """Read one line; raise RemoteError if it is an error reply."""
        reply = self.receive_raw()
        if reply.get("type") == "error":
            raise RemoteError(str(reply.get("message")), code=str(reply.get("code")),
                              request_id=reply.get("id"))
        return reply

    def receive_raw(self) -> dict[str, Any]:
        """Read one line as a dict, error replies included."""
        try:
            line = self._file.readline(MAX_REPLY_LINE + 1)
        except socket.timeout:
            raise WireError("timed out waiting for the daemon", code=TIMEOUT) from None
        except OSError as exc:
            raise WireError(f"lost the daemon: {exc}", code=DISCONNECTED) from None
        if not line.endswith(b"\n"):
            raise WireError("the daemon closed the connection", code=DISCONNECTED)
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise WireError("the daemon sent a line that is not a JSON object", code=BAD_REPLY)
        return reply

    def hello(self, *, agent: str | None = None, token: str, role: str = "agent") -> dict[str, Any]:
        return self.request("hello", **_hello_fields(agent, token, role))

    def begin_op(self, *, cwd: str, command: str | None = None, tool: str | None = None,
                 params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        what = {"command": command} if tool is None else {"tool": {"tool": tool, "params": dict(params or {})}}
        return self.request("begin_op", cwd=cwd, **what)

    def end_op(self, op: int, exit_status: int, output_size: int = 0) -> dict[str, Any]:
        return self.request("end_op", op=op, exit_status=exit_status, output_size=output_size)

    def read(self, key: str) -> dict[str, Any]:
        return self.request("read", key=key)

    def inbox(self, *, peek: bool = False) -> dict[str, Any]:
        return self.request("inbox", peek=peek)

    def finish(self) -> dict[str, Any]:
        return self.request("finish")

    def usage(self, tokens: int, cost: float = 0.0) -> dict[str, Any]:
        return self.request("usage", tokens=tokens, cost=cost)

    def resume(self, agent: str | None = None) -> dict[str, Any]:
        return self.request("resume", **({} if agent is None else {"agent": agent}))

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def retract(self, agent: str, ops: list[int] | str = "all") -> dict[str, Any]:
        return self.request("retract", agent=agent, ops=ops)

    def shutdown(self) -> dict[str, Any]:
        return self.request("shutdown")


# ---------------------------------------------------------------- asynchronous


class AsyncClient:
    """An asyncio client speaking typed `wire` models. One request at a time per
    client (a lock orders them); after `subscribe()` the connection only streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float | None) -> None:
        from coagent_cli.daemon import wire  # deferred: keeps `Client` users free of pydantic

        self._wire = wire
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, socket_path: str | os.PathLike[str], *,
                      timeout: float | None = 30.0) -> "AsyncClient":
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(os.fspath(socket_path), limit=MAX_REPLY_LINE + 1), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise WireError(f"cannot reach the daemon at {socket_path}: {exc!r}", code=UNREACHABLE) from None
        return cls(reader, writer, timeout)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass

    async def request(self, request: "wire.WireModel") -> Any:
        """Send a Request model (its id is assigned here) and return the typed Response."""
        async with self._lock:
            rid = next(self._ids)
            await self._send(request.model_copy(update={"id": rid}))
            reply = await self._receive()
        if getattr(reply, "id", None) != rid:
            raise WireError(f"reply {reply.type} does not answer request {rid}", code=BAD_REPLY)
        return reply

    async def _send(self, message: "wire.WireModel") -> None:
        try:
            self._writer.write(self._wire.encode(message))
            await self._writer.drain()
        except OSError as exc:
            raise WireError(f"lost the daemon: {exc}", code=DISCONNECTED) from None

    async def _receive(self) -> Any:
        try:
            line = await asyncio.wait_for(self._reader.readline(), self._timeout)
        except asyncio.TimeoutError:
            raise WireError("timed out waiting for the daemon", code=TIMEOUT) from None
        except (OSError, ValueError) as exc:  # ValueError: a reply line over the limit
            raise WireError(f"lost the daemon: {exc}", code=DISCONNECTED) from None
        if not line.endswith(b"\n"):
            raise WireError("the daemon closed the connection", code=DISCONNECTED)
        reply = self._wire.parse_reply(line)
        if isinstance(reply, self._wire.ErrorReply):
            raise RemoteError(reply.message, code=reply.code, request_id=reply.id)
        return reply

    async def hello(self, *, agent: str | None = None, token: str, role: str = "agent") -> "wire.HelloReply":
        return await self.request(self._wire.Hello(**_hello_fields(agent, token, role)))

    async def begin_op(self, *, cwd: str, command: str | None = None, tool: str | None = None,
                       params: Mapping[str, Any] | None = None) -> "wire.OpGranted":
        call = None if tool is None else self._wire.ToolCall(tool=tool, params=dict(params or {}))
        return await self.request(self._wire.BeginOp(cwd=cwd, command=command, tool=call))

    async def end_op(self, op: int, exit_status: int, output_size: int = 0) -> "wire.OpEnded":
        return await self.request(self._wire.EndOp(op=op, exit_status=exit_status, output_size=output_size))

    async def read(self, key: str) -> "wire.ReadReply":
        return await self.request(self._wire.Read(key=key))

    async def inbox(self, *, peek: bool = False) -> "wire.InboxReply":
        return await self.request(self._wire.Inbox(peek=peek))

    async def finish(self) -> "wire.FinishReply":
        return await self.request(self._wire.Finish())

    async def resume(self, agent: str | None = None) -> "wire.ResumeReply":
        return await self.request(self._wire.Resume(agent=agent))

    async def status(self) -> "wire.StatusReply":
        return await self.request(self._wire.Status())

    async def retract(self, agent: str, ops: list[int] | str = "all") -> "wire.RetractReply":
        return await self.request(self._wire.Retract(agent=agent, ops=ops))  # type: ignore[arg-type]

    async def shutdown(self) -> "wire.ShutdownReply":
        return await self.request(self._wire.Shutdown())

    async def subscribe(self) -> AsyncIterator["wire.Event"]:
        """Events until the server closes the stream (first one: a snapshot)."""
        await self.request(self._wire.Subscribe())
        while True:
            try:
                reply = await self._receive_event()
            except WireError as exc:
                if exc.code == DISCONNECTED:
                    return
                raise
            yield reply

    async def _receive_event(self) -> "wire.Event":
        line = await self._reader.readline()
        if not line.endswith(b"\n"):
            raise WireError("the daemon closed the connection", code=DISCONNECTED)
        event = self._wire.parse_reply(line)
        if not isinstance(event, self._wire.Event):
            raise WireError(f"expected an event, got {event.type}", code=BAD_REPLY)
        return event
