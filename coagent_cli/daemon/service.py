"""The daemon proper: the `Handler` behind the socket that drives one controller.

It is the real-world twin of `coagent_cli.sim.simulator`: wire requests become core
events, the core's actions are carried out on the live workspace by an `Executor`, and
every effect is answered with exactly one completion event.

    begin_op  -> executor footprint -> OpRequested -> ... the agent's own op gets
                 Execute:   a shell line is granted `run` (the agent's shell runs it and
                            sends end_op); a tool call is run here and `served`
                 ServeRead: served here from stored versions (`served`)
                 Wait/Hold: the request stays open until the op is admitted
                 Refuse:    an error reply with the core's code
    end_op    -> executor.finish -> OpExecuted; redos of others go on in the background

Rules this module keeps:
- One asyncio.Lock serialises every call into the core, so events reach it in one order
  and the journal records them in that order.
- Every event fed to the core and every action it returns is journaled (one SQLite
  transaction per feed, in a worker thread) BEFORE any of those actions is acted on or
  acknowledged: a crash loses nothing that anybody was told.
- Effects run in worker threads (asyncio.to_thread), outside the lock; the core latches
  keys, so effects of different sequences may overlap. Each one feeds its completion
  back through the lock.
- Ops belong to their agent, not to a connection: end_op may come on any connection of
  the same agent (a gated shell may open one per command line). When an agent's LAST
  connection closes with ops granted but not ended, they are finished with exit status
  -1 after `orphan_grace` seconds (None: never, wait for a later end_op) and the agent
  is marked crashed. An agent that leaves with nothing open is simply idle. What such an
  op did stays done: the executor's images record it.

Hot reload: when the executor has a tool library (`executor.library`), the daemon
watches its directories (daemon.library.LibraryFeed) from start() until drain(). A reload
changes the library in place, so the next begin_op sees new and changed tools; each new
tool is announced as a `tool_added` event, every change is journaled
(`tool_library_changed`), and status reports `library_size`. A tool call naming a tool the
library does not know makes the daemon reload once before it refuses, so a tool written
just now need not wait for the watcher.

Resume/Restart/Abort directives of the core are recorded (journal, `directives`, event
stream); acting on them (relaunching an agent process) is the run launcher's job.

This module holds the lifecycle, the Handler and its requests, and the core loop (`_feed`).
The parts beside it: `records` (what is kept of agents and ops), `effects` (performing
the core's effects), `actions` (its informational actions), `bookkeeping` (the small
moves they share) and `status` (the snapshot's agent lines and totals).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from coagent_cli.core.engine import Engine
from coagent_cli.core.keys import Key
from coagent_cli.core import model as core
from coagent_cli.daemon import wire
from coagent_cli.daemon.actions import APPLY, InformationalActions
from coagent_cli.daemon.effects import Effects
from coagent_cli.daemon.journaling import record_feed, wire_notice
from coagent_cli.daemon.library import LibraryChange, LibraryFeed
from coagent_cli.daemon.records import TrackedAgent, TrackedOp, op_spec, op_summary
from coagent_cli.daemon.status import agent_info, run_totals
from coagent_cli.daemon.transport import Connection, EventHub
from coagent_cli.errors import ProtocolError, UsageError, WireError
from coagent_cli.executor.protocol import Executor, Footprint, OpRequest, ShellCommand, ToolCall
from coagent_cli.journal import Journal

if TYPE_CHECKING:
    from coagent_cli.daemon.resume import Resumed

__all__ = ["DaemonService", "ServiceConfig", "BAD_TOKEN", "UNKNOWN_OP"]

BAD_TOKEN = "bad_token"
UNKNOWN_OP = "unknown_op"
NOT_GRANTED = "not_granted"
UNKNOWN_AGENT = "unknown_agent"
_RECENT_OPS = 50   # ops a snapshot shows


@dataclass
class ServiceConfig:
    """How one daemon behaves; tokens are issued by the launcher (run.py)."""

    workspace: Path                    # the live workspace (absolute)
    agents: dict[str, str]             # agent name -> token, in rank order
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    monitor_token: str = field(default_factory=lambda: secrets.token_hex(16))
    cc: str = "mtpo"                   # the controller's name, for status
    orphan_grace: float | None = 0.0   # seconds before an abandoned granted op is ended
    watch_library: bool = True         # reload the executor's tool library when its files change


class DaemonService(Effects, InformationalActions):
    """The Handler: owns the controller, the executor and the journal of one run."""

    def __init__(self, config: ServiceConfig, controller: Engine, executor: Executor,
                 journal: Journal, hub: EventHub) -> None:
        self.config = config
        self.core = controller
        self.executor = executor
        self.journal = journal
        self.hub = hub
        self.agents = {n: TrackedAgent(n, r, t) for r, (n, t) in enumerate(config.agents.items())}
        self.started_at: float | None = None  # set by start(): when the run was launched
        self.ops: dict[int, TrackedOp] = {}
        self.directives: list[dict[str, str]] = []  # resume/restart/abort, for the launcher
        self.failures: list[str] = []               # effects that could not be performed
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retracts: dict[int, asyncio.Future[None]] = {}
        self._next_id = 0
        library = getattr(executor, "library", None)  # WorkspaceExecutor's ToolLibrary
        self.library = LibraryFeed(library, self._library_changed) if library is not None else None

    # ---------------------------------------------------------------- lifecycle

    async def start(self, resumed: "Resumed | None" = None) -> None:
        """Register the agents with the core, in rank order (journaled). A continued run
        comes `resumed` (daemon.resume): its controller already knows the agents; their
        finished state and pending notices are taken from it, and the effects it still
        had under way are performed now."""
        self.started_at = time.time()
        start = await asyncio.to_thread(self.journal.get_meta, "next_op_id")
        self._next_id = int(start or 0)  # a continued run goes on numbering its ops
        for agent in self.agents.values():  # all of them, or those a crash cut off from it
            if agent.name not in self.core.agents:
                await self._feed(core.AgentRegistered(agent.name, agent.rank))
        if resumed is not None:
            await asyncio.to_thread(self._take_up_agents)
            for effect in list(resumed.replay.pending.values()):
                self._spawn(self._perform(effect))
        if self.library is not None and self.config.watch_library:
            await self.library.start()

    def _take_up_agents(self) -> None:
        for agent in self.agents.values():
            state = self.core.agents[agent.name]
            if state.status in ("finished", "settled"):
                agent.state = "finished"
            agent.inbox = {n.notice_id: wire_notice(n, self.executor.content) for n in state.inbox.values()}
            agent.ops = state.steps

    async def drain(self, timeout: float = 10.0) -> None:
        """At shutdown: stop watching the tool library, wait for background effects."""
        await self.close()
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=left)

    async def close(self) -> None:
        """Stop watching the tool library (idempotent; drain calls it)."""
        if self.library is not None:
            await self.library.stop()

    @property
    def quiescent(self) -> bool:
        return self.core.quiescent

    # ---------------------------------------------------------------- Handler

    async def authenticate(self, conn: Connection, hello: wire.Hello) -> wire.HelloReply:
        wanted = self._token_for(hello)
        if wanted is None or not secrets.compare_digest(wanted.encode(), hello.token.encode()):
            raise WireError("unknown agent or wrong token", code=BAD_TOKEN)
        if hello.agent is None:
            return wire.HelloReply()
        agent = self.agents[hello.agent]
        agent.conns.add(conn)
        if agent.joined_at is None:
            agent.joined_at = time.time()
        if agent.orphan_timer is not None:
            agent.orphan_timer.cancel()
            agent.orphan_timer = None
        if agent.state in ("registered", "crashed"):
            await self._set_state(agent, "running", "agent_joined")
        return wire.HelloReply(rank=agent.rank)

    def _token_for(self, hello: wire.Hello) -> str | None:
        if hello.role == "agent":
            agent = self.agents.get(hello.agent or "")
            return agent.token if agent is not None else None
        return {"admin": self.config.admin_token, "monitor": self.config.monitor_token}[hello.role]

    async def handle(self, conn: Connection, request: wire.Request) -> wire.Response:
        method: Callable[[Connection, Any], Any] = getattr(self, "_on_" + request.type)
        return await method(conn, request)

    async def disconnected(self, conn: Connection) -> None:
        agent = self.agents.get(conn.agent or "")
        if agent is None:
            return
        agent.conns.discard(conn)
        if agent.conns or self.config.orphan_grace is None or not self._open_ops(agent.name):
            return  # an idle agent may come back on a new connection (one per command line)
        agent.orphan_timer = self._spawn(self._abandon(agent))

    def snapshot(self) -> wire.Snapshot:
        recent = list(self.ops.values())[-_RECENT_OPS:]
        agents = [agent_info(a, recent) for a in self.agents.values()]
        ops = [wire.OpInfo(op=o.op_id, agent=o.agent, state=o.state, summary=o.summary,
                           reads=o.reads, writes=o.writes) for o in recent]
        size = self.library.size if self.library is not None else None
        return wire.Snapshot(cc=self.config.cc, agents=agents, ops=ops, quiescent=self.core.quiescent,
                             library_size=size, totals=run_totals(self.core.stats, self.agents.values()),
                             started_at=self.started_at)


    # ---------------------------------------------------------------- requests

    async def _on_begin_op(self, conn: Connection, req: wire.BeginOp) -> wire.OpGranted:
        agent = self._agent_of(conn)
        if req.command is not None:
            action: ShellCommand | ToolCall = ShellCommand(req.command, Path(req.cwd))
        else:
            assert req.tool is not None
            action = ToolCall(req.tool.tool, dict(req.tool.params), Path(req.cwd))
        return await self._submit(agent, action)

    async def _submit(self, agent: TrackedAgent, action: ShellCommand | ToolCall) -> wire.OpGranted:
        op = await asyncio.shield(self._request(agent, action))
        assert op.granted is not None
        try:
            grant = await asyncio.shield(op.granted)  # a cancelled wait leaves the grant be
        except asyncio.CancelledError:
            op.orphan = not op.granted.done()  # the peer left before it was admitted
            raise
        return grant.model_copy(update={"notices": list(agent.inbox.values())})

    async def _request(self, agent: TrackedAgent, action: ShellCommand | ToolCall) -> TrackedOp:
        op_id = self._new_id()
        request = OpRequest(op_id, agent.name, action)
        footprint = await self._footprint_of(request)
        spec = op_spec(op_id, agent.name, footprint, op_summary(action))
        kind = "shell" if isinstance(action, ShellCommand) else "tool"
        op = TrackedOp(op_id, agent.name, spec.label, kind,
                       sorted(map(str, spec.reads)), sorted(map(str, spec.writes)))
        op.granted = asyncio.get_running_loop().create_future()
        self.ops[op_id] = op
        agent.ops += 1
        try:
            await self._feed(core.OpRequested(spec), cwd=str(action.cwd), footprint=footprint.kind)
        except BaseException:
            self.ops.pop(op_id, None)
            raise
        return op

    async def _footprint_of(self, request: OpRequest) -> Footprint:
        try:
            return await asyncio.to_thread(self._footprint, request)
        except UsageError as exc:
            if exc.code != "unknown_tool" or self.library is None:
                raise
            unknown = exc
        if not await self.library.reload():  # no tool written a moment ago, not yet seen
            raise unknown
        return await asyncio.to_thread(self._footprint, request)

    def _footprint(self, request: OpRequest) -> Footprint:
        # WorkspaceExecutor spells the footprint step `register` (it also remembers the
        # request for prepare/run); the Executor protocol spells it `footprint`.
        register = getattr(self.executor, "register", None)
        return register(request) if register is not None else self.executor.footprint(request)

    async def _on_end_op(self, conn: Connection, req: wire.EndOp) -> wire.OpEnded:
        agent = self._agent_of(conn)
        op = self.ops.get(req.op)
        if op is None or op.agent != agent.name:
            raise ProtocolError(f"op {req.op} is not an op of {agent.name}", code=UNKNOWN_OP)
        if not op.running:
            raise ProtocolError(f"op {req.op} is not running (it is {op.state})", code=NOT_GRANTED)
        await asyncio.shield(self._end(op, req.exit_status))
        return wire.OpEnded(op=op.op_id, pending_notices=len(agent.inbox))


    async def _on_read(self, conn: Connection, req: wire.Read) -> wire.ReadReply:
        agent = self._agent_of(conn)
        if req.key is not None:
            key = Key.parse(req.key)
            if key.scheme != "file":
                raise ProtocolError(f"only file: keys can be read, not {key}", code="bad_key")
            call = ToolCall("read_file", {"path": key.name}, self.config.workspace)
        else:
            assert req.tool is not None
            call = ToolCall(req.tool.tool, dict(req.tool.params), self.config.workspace)
        grant = await self._submit(agent, call)
        text = req.key or req.tool.tool  # type: ignore[union-attr]
        return wire.ReadReply(key=text, exists=grant.exit_status == 0, content=grant.content)

    async def _on_inbox(self, conn: Connection, req: wire.Inbox) -> wire.InboxReply:
        agent = self._agent_of(conn)
        notices = list(agent.inbox.values())
        if notices and not req.peek:
            await self._feed(core.NoticesTaken(agent.name, tuple(n.id for n in notices)))
            for n in notices:
                agent.inbox.pop(n.id, None)
            agent.handled += len(notices)
        return wire.InboxReply(notices=notices)

    async def _on_usage(self, conn: Connection, req: wire.Usage) -> wire.UsageReply:
        agent = self._agent_of(conn)
        agent.tokens += req.tokens
        agent.cost += req.cost
        return wire.UsageReply(id=req.id)

    async def _on_finish(self, conn: Connection, req: wire.Finish) -> wire.FinishReply:
        agent = self._agent_of(conn)
        if agent.inbox:
            return wire.FinishReply(finished=False, notices=list(agent.inbox.values()))
        await self._feed(core.AgentFinished(agent.name))
        agent.finished_at = time.time()
        await self._set_state(agent, "finished", "agent_finished")
        return wire.FinishReply(finished=True)

    async def _on_resume(self, conn: Connection, req: wire.Resume) -> wire.ResumeReply:
        agent = self.agents.get(req.agent or conn.agent or "")
        if agent is None:
            raise ProtocolError(f"no agent {req.agent!r}", code=UNKNOWN_AGENT)
        await self._feed(core.AgentResumed(agent.name))
        await self._set_state(agent, "running", "agent_resumed")
        return wire.ResumeReply(agent=agent.name, notices=list(agent.inbox.values()))

    async def _on_status(self, conn: Connection, req: wire.Status) -> wire.StatusReply:
        return wire.StatusReply(snapshot=self.snapshot())

    async def _on_subscribe(self, conn: Connection, req: wire.Subscribe) -> wire.Subscribed:
        return wire.Subscribed(queue=self.hub.maxsize)

    async def _on_shutdown(self, conn: Connection, req: wire.Shutdown) -> wire.ShutdownReply:
        await self._record_quietly("shutdown_requested", {"by": conn.role or ""})
        self._publish("shutdown")
        return wire.ShutdownReply()

    async def _on_retract(self, conn: Connection, req: wire.Retract) -> wire.RetractReply:
        agent = self.agents.get(req.agent)
        if agent is None:
            raise ProtocolError(f"no agent {req.agent!r}", code=UNKNOWN_AGENT)
        live = self._live_ops(agent.name)
        ops = live if req.ops == "all" else list(req.ops)
        if not ops:
            return wire.RetractReply(agent=agent.name, ops=[])
        done = await asyncio.shield(self._retract(agent, tuple(ops)))
        await done
        return wire.RetractReply(agent=agent.name, ops=ops)

    async def _retract(self, agent: TrackedAgent, ops: tuple[int, ...]) -> asyncio.Future[None]:
        rid = self._new_id()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._retracts[rid] = done
        try:
            await self._feed(core.RetractRequested(rid, agent.name, ops))
        except BaseException:
            self._retracts.pop(rid, None)
            raise
        return done

    def _live_ops(self, agent: str) -> list[int]:
        # Read-only look into the core's ledger: which of the agent's ops it still holds.
        return sorted(o for o, r in self.core.ledger.ops.items()
                      if r.agent == agent and r.state in ("live", "done"))

    def _agent_of(self, conn: Connection) -> TrackedAgent:
        agent = self.agents.get(conn.agent or "")
        if agent is None:  # the transport only lets agents send these
            raise ProtocolError("only an agent may send this", code="forbidden")
        return agent

    def _open_ops(self, agent: str) -> list[TrackedOp]:
        return [o for o in self.ops.values() if o.agent == agent and (o.running or o.state == "held")]

    # ---------------------------------------------------------------- disconnects

    async def _abandon(self, agent: TrackedAgent) -> None:
        await asyncio.sleep(self.config.orphan_grace or 0.0)
        if agent.conns:
            return
        agent.orphan_timer = None
        for op in self._open_ops(agent.name):
            op.orphan = True
            if op.running:
                await asyncio.shield(self._end(op, -1))
        if agent.state not in ("finished", "retracted"):
            await self._set_state(agent, "crashed", "agent_crashed")

    # ---------------------------------------------------------------- the core loop

    async def _feed(self, event: core.Event, **extra: Any) -> None:
        """Feed one event; journal it and its actions; act on them."""
        async with self._lock:
            actions = self.core.handle(event)
            snap = self.core.snapshot()
            notices = await asyncio.to_thread(self._record, event, actions, snap, extra)
            effects = self._apply(actions, notices)
        for effect in effects:
            self._spawn(self._perform(effect))

    def _record(self, event: core.Event, actions: list[core.Action], snap: dict[str, Any],
                extra: Mapping[str, Any]) -> dict[int, wire.Notice]:
        """Worker thread: build notices (diffs read stored versions) and journal it all."""
        notices = {a.notice.notice_id: wire_notice(a.notice, self.executor.content)
                   for a in actions if isinstance(a, core.Notify)}
        record_feed(self.journal, event, actions, extra=extra, notices=notices, snapshot=snap,
                    next_op_id=self._next_id)
        return notices

    def _apply(self, actions: list[core.Action], notices: Mapping[int, wire.Notice]) -> list[core.Action]:
        effects: list[core.Action] = []
        for a in actions:
            if core.is_effect(a):
                effects.append(a)
            elif isinstance(a, core.Notify):
                self._deliver(a.notice, notices[a.notice.notice_id])
            else:
                APPLY.get(type(a), DaemonService._ignore)(self, a)
        return effects

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---------------------------------------------------------------- the tool library

    def _library_changed(self, change: LibraryChange) -> None:
        """On the loop: announce new tools, journal the change."""
        for name in change.added:  # only additions: a monitor counts library_size up per event
            self._publish("tool_added", detail=name)
        self._spawn(self._record_quietly("tool_library_changed", {
            "version": change.version, "added": list(change.added),
            "changed": list(change.changed), "removed": list(change.removed)}))
