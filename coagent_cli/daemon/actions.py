"""The core's informational actions: what they change in the daemon's records and
which waiting requests they answer (its effects are `daemon.effects`).

    Completed        an op's sequence is done: its grant is answered (or a retraction ends)
    Wait, Hold       the op stays held; its agent is waiting
    Refuse           the op's request (or a retraction) fails with the core's code
    Drop             a moved op could not be redone
    Resume/Restart/Abort  recorded in `directives` for the run launcher, and published
    Notify           the notice goes to its agent's inbox (`_deliver`)

`InformationalActions` is mixed into `DaemonService`, which sets the attributes declared
below and dispatches through `APPLY` (Notify comes with its wire notice, so apart).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from coagent_cli.core import model as core
from coagent_cli.daemon import wire
from coagent_cli.daemon.bookkeeping import Bookkeeping
from coagent_cli.daemon.records import wire_status
from coagent_cli.errors import ProtocolError
from coagent_cli.executor.protocol import RunResult

__all__ = ["APPLY", "InformationalActions"]

_KEPT_OPS = 5000   # ops kept in memory for status and routing


class InformationalActions(Bookkeeping):
    directives: list[dict[str, str]]
    _retracts: dict[int, asyncio.Future[None]]

    def _ignore(self, a: core.Action) -> None:
        pass

    def _completed(self, a: core.Completed) -> None:
        done = self._retracts.pop(a.op_id, None)
        if done is not None:
            if not done.done():
                done.set_result(None)
            return
        op = self.ops.get(a.op_id)
        if op is None:
            return
        op.state = "done"
        self._publish("op_ended", agent=op.agent, op=op.op_id)
        self._forget_old_ops()
        result = op.result or RunResult(0)
        self._resolve(op, grant=wire.OpGranted(op=op.op_id, action=op.reply, content=result.output,
                                               exit_status=wire_status(result.exit_status)))

    def _forget_old_ops(self) -> None:
        """Keep memory bounded: ops over `_KEPT_OPS` are forgotten, oldest finished first
        (the journal keeps them all; effects on a forgotten op still work)."""
        if len(self.ops) <= _KEPT_OPS:
            return
        for op_id in [o.op_id for o in self.ops.values() if o.state in ("done", "dropped", "undone")
                      and not o.running][: len(self.ops) - _KEPT_OPS]:
            del self.ops[op_id]

    def _wait(self, a: core.Wait | core.Hold) -> None:
        op = self.ops.get(a.op_id)
        if op is not None:
            op.state = "held"
            self._publish("op_held", agent=op.agent, op=op.op_id,
                          detail=getattr(a, "reason", "irreversible: held until earlier agents finish"))
            agent = self.agents[op.agent]
            if agent.state == "running":
                agent.state = "waiting"

    def _refuse(self, a: core.Refuse) -> None:
        op = self.ops.get(a.op_id)
        if op is not None:
            op.state = "dropped"
            self._resolve(op, error=ProtocolError(a.message, code=a.code))
        done = self._retracts.pop(a.op_id, None)
        if done is not None and not done.done():
            done.set_exception(ProtocolError(a.message, code=a.code))

    def _drop(self, a: core.Drop) -> None:
        self._set_op(a.op_id, "dropped")
        self._publish("op_dropped", op=a.op_id, agent=self._owner(a.op_id), detail=a.reason)

    def _directive(self, a: core.ResumeAgent | core.RestartAgent | core.AbortAgent) -> None:
        kind = {core.ResumeAgent: "resume", core.RestartAgent: "restart", core.AbortAgent: "abort"}[type(a)]
        self.directives.append({"agent": a.agent, "directive": kind, "reason": getattr(a, "reason", "")})
        agent = self.agents[a.agent]
        if kind == "resume" and agent.state == "finished":
            agent.state = "running"
        # The wire has no abort/restart event kinds: they travel as agent_resumed/agent_left
        # with the directive in `detail`.
        event: wire.EventKind = "agent_left" if kind == "abort" else "agent_resumed"
        self._publish(event, agent=a.agent, detail=f"{kind}: {getattr(a, 'reason', '')}".rstrip(": "))

    def _deliver(self, notice: core.Notice, message: wire.Notice) -> None:
        agent = self.agents[notice.agent]
        agent.inbox[message.id] = message
        self._publish("notice", agent=notice.agent, key=message.key, notice=message, detail=message.detail)


APPLY: dict[type, Callable[[InformationalActions, Any], None]] = {
    core.Completed: InformationalActions._completed,
    core.Wait: InformationalActions._wait,
    core.Hold: InformationalActions._wait,
    core.Refuse: InformationalActions._refuse,
    core.Drop: InformationalActions._drop,
    core.ResumeAgent: InformationalActions._directive,
    core.RestartAgent: InformationalActions._directive,
    core.AbortAgent: InformationalActions._directive,
}
