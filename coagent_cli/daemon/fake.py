"""`FakeHandler`: an in-memory daemon behind the real transport, for tests and demos."""

from __future__ import annotations

import secrets

from coagent_cli.daemon import wire
from coagent_cli.daemon.connection import Connection
from coagent_cli.daemon.events import EventHub
from coagent_cli.errors import ProtocolError, WireError


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

