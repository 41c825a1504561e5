"""What a handler sees of the transport: the `Connection` and the `Handler` Protocol."""

from __future__ import annotations

from typing import Protocol

from coagent_cli.daemon import wire
from coagent_cli.daemon.events import Subscription
from coagent_cli.daemon.socket_safety import PeerCred


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
