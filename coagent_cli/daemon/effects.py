"""Carrying out the core's effects on the live workspace, each in a task of its own
(blocking calls in worker threads) and each answered with exactly one completion event
fed back to the core.

    Execute    a shell line is granted `run` (the agent's shell runs it and sends
               end_op, which `_end` finishes); a tool call is run here and `served`;
               a shadowed op is not run at all (`skip`)
    ServeRead  served here from stored versions
    Undo/Redo  the executor's images move the op out of the way and back

`Effects` is mixed into `DaemonService`; besides the attributes declared below it uses
the service's `_feed`.
"""

from __future__ import annotations

import asyncio
import logging

from coagent_cli.core import model as core
from coagent_cli.daemon import wire
from coagent_cli.daemon.bookkeeping import Bookkeeping
from coagent_cli.daemon.records import TrackedOp
from coagent_cli.errors import CoagentError, ExecutionError
from coagent_cli.executor.protocol import Executor, RunResult

log = logging.getLogger(__name__)

__all__ = ["Effects"]


class Effects(Bookkeeping):
    executor: Executor
    failures: list[str]

    async def _perform(self, effect: core.Action) -> None:
        try:
            if isinstance(effect, core.Execute):
                await self._execute(effect)
            elif isinstance(effect, core.ServeRead):
                await self._serve(effect)
            elif isinstance(effect, core.Undo):
                await self._undo(effect)
            elif isinstance(effect, core.Redo):
                await self._redo(effect)
        except Exception as exc:  # reported and journaled; the run stalls visibly, not silently
            log.exception("effect %s failed", effect)
            await self._failed(f"{type(effect).__name__} of op {getattr(effect, 'op_id', '?')} "
                               f"failed: {exc}")

    async def _execute(self, a: core.Execute) -> None:
        op = self.ops.get(a.op_id)
        if op is None or op.orphan:  # nobody will run it (or asked a daemon now dead): a no-op
            await self._feed(core.OpExecuted(a.op_id, {}), abandoned=True)
            return
        op.state = "running"
        if a.shadowed:
            writes = await asyncio.to_thread(self.executor.shadow, op.op_id)
            op.result, op.reply = RunResult(0), "skip"  # hidden by a later overwrite: do not run
            await self._feed(core.OpExecuted(op.op_id, writes), shadowed=True)
        elif op.kind == "shell":
            await self._grant_run(op)
        else:
            await self._run_tool(op)

    async def _grant_run(self, op: TrackedOp) -> None:
        try:
            await asyncio.to_thread(self.executor.prepare, op.op_id)
        except CoagentError as exc:
            self._resolve(op, error=ExecutionError(f"cannot prepare op {op.op_id}: {exc}",
                                                   code="prepare_failed"))
            await self._feed(core.OpExecuted(op.op_id, {}), failed=str(exc))
            return
        op.running, op.state = True, "running"
        await self._record_quietly("granted", {"action": "run"}, agent=op.agent, op_id=op.op_id)
        self._publish("op_begun", agent=op.agent, op=op.op_id, detail=op.summary)
        self._resolve(op, grant=wire.OpGranted(op=op.op_id, action="run"))
        if op.orphan:  # the peer left while we prepared
            await self._end(op, -1)

    async def _run_tool(self, op: TrackedOp) -> None:
        def run() -> RunResult:
            self.executor.prepare(op.op_id)
            return self.executor.run(op.op_id)
        try:
            op.result = await asyncio.to_thread(run)
        except CoagentError as exc:  # the tool could not be performed at all
            op.result = RunResult(1, f"coagent: {exc}\n")
        self._publish("op_begun", agent=op.agent, op=op.op_id, detail=op.summary)
        await self._feed(core.OpExecuted(op.op_id, dict(op.result.writes)),
                         exit_status=op.result.exit_status)

    async def _serve(self, a: core.ServeRead) -> None:
        op = self.ops.get(a.op_id)
        if op is not None and not op.orphan:
            op.result = await asyncio.to_thread(self.executor.serve, op.op_id, a.sources)
        await self._feed(core.OpExecuted(op.op_id, {}), served={str(k): v for k, v in a.sources.items()})

    async def _undo(self, a: core.Undo) -> None:
        await asyncio.to_thread(self.executor.undo, a.op_id)
        self._set_op(a.op_id, "undone")
        self._publish("op_undone", op=a.op_id, agent=self._owner(a.op_id))
        await self._feed(core.OpUndone(a.op_id))

    async def _redo(self, a: core.Redo) -> None:
        try:
            res = await asyncio.to_thread(self.executor.redo, a.op_id, a.base_changed)
            done = core.OpRedone(a.op_id, res.ok, dict(res.writes), res.reason)
        except ExecutionError as exc:  # a failed redo leaves the state as before: a drop
            done = core.OpRedone(a.op_id, False, {}, str(exc))
        if done.ok:
            self._set_op(a.op_id, "done")
            self._publish("op_redone", op=a.op_id, agent=self._owner(a.op_id))
        await self._feed(done)

    async def _failed(self, message: str) -> None:
        self.failures.append(message)
        await self._record_quietly("effect_failed", {"message": message})

    async def _end(self, op: TrackedOp, exit_status: int) -> None:
        if not op.running:
            return  # ended meanwhile (an abandoned op, then a late end_op)
        op.running = False
        try:
            writes = await asyncio.to_thread(self.executor.finish, op.op_id, exit_status)
        except CoagentError as exc:
            await self._failed(f"finish of op {op.op_id} failed: {exc}")
            writes = {}
        await self._feed(core.OpExecuted(op.op_id, writes), exit_status=exit_status)
