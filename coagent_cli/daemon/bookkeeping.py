"""The daemon's small shared moves on its own records: resolving an op's grant, setting
op and agent states, numbering ops, journaling a row, publishing an event.

`Bookkeeping` is the base of the daemon's mixins (`Effects`, `InformationalActions`) and
so of `DaemonService`, which sets the attributes declared below.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

from coagent_cli.daemon import wire
from coagent_cli.daemon.records import TrackedAgent, TrackedOp
from coagent_cli.daemon.transport import EventHub
from coagent_cli.journal import Journal

__all__ = ["Bookkeeping"]


class Bookkeeping:
    agents: dict[str, TrackedAgent]
    ops: dict[int, TrackedOp]
    journal: Journal
    hub: EventHub
    _next_id: int

    def _resolve(self, op: TrackedOp, *, grant: wire.OpGranted | None = None,
                 error: BaseException | None = None) -> None:
        fut = op.granted
        if fut is None or fut.done():
            return
        if error is not None:
            fut.set_exception(error)
            fut.exception()  # mark retrieved: an orphan's refusal is nobody's error
        else:
            fut.set_result(grant)  # type: ignore[arg-type]
        agent = self.agents[op.agent]
        if agent.state == "waiting":
            agent.state = "running"

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _set_op(self, op_id: int, state: wire.OpState) -> None:
        op = self.ops.get(op_id)
        if op is not None:
            op.state = state

    def _owner(self, op_id: int) -> str | None:
        op = self.ops.get(op_id)
        return op.agent if op is not None else None

    async def _set_state(self, agent: TrackedAgent, state: wire.AgentState, event: wire.EventKind) -> None:
        agent.state = state
        await self._record_quietly(event, {"state": state}, agent=agent.name)
        self._publish(event, agent=agent.name)

    async def _record_quietly(self, kind: str, payload: Mapping[str, Any], *,
                              agent: str | None = None, op_id: int | None = None) -> None:
        await asyncio.to_thread(self.journal.record, kind, payload, agent=agent, op_id=op_id)

    def _publish(self, kind: wire.EventKind, **fields_: Any) -> None:
        self.hub.publish(wire.Event(kind=kind, **fields_))
