"""Running an op's action: the tool (tools.invoke) or `bash -c` with a timeout."""

from __future__ import annotations

from pathlib import Path

from coagent_cli.errors import ExecutionError
from coagent_cli.executor.journaling import JournalingMixin
from coagent_cli.executor.process import run_line
from coagent_cli.executor.protocol import ShellCommand
from coagent_cli.executor.state import TOOL_TIMEOUT, OpState
from coagent_cli.tools import execute as tools


class RunningMixin(JournalingMixin):
    def _perform(self, op: OpState, timeout: float | None) -> tuple[int, str]:
        resolved, action = op.resolved, op.request.action
        if resolved.tool is not None:
            try:
                result = tools.invoke(resolved.tool, resolved.params or {}, self.workspace,
                                      store=self.blobs, timeout=timeout or TOOL_TIMEOUT)
            except ExecutionError as exc:  # a capture failed or the command timed out
                op.tool_result = None
                return 1, str(exc)
            op.tool_result = result
            return result.exit_status, result.output
        assert isinstance(action, ShellCommand)
        done = run_line(action.line, Path(action.cwd), timeout=timeout,
                        on_start=lambda pgid: self._journal_process(op, pgid))
        return done.exit_status, done.output
