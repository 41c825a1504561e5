"""The agent loop: ask the model, run the tool calls it makes, repeat until it stops.

It talks only to a Model and an Environment (and a Clock). Each step:
  1. stop if a limit is reached (max steps, max tokens, wall time);
  2. inject the notices that arrived, as one user message after the last tool results;
  3. refresh the offered tools when the environment's tool version changed;
  4. query the model; no tool call means the agent is done, unless notices are waiting;
  5. run each tool call in order (one or several per reply: servers without parallel tool
     calls send one), one tool message per call.
Limits are checked before each turn, so a turn begun in time is completed (its tool calls
all get results and the conversation stays valid for a later resume). `run()` returns when
the agent stops; `resume(notices)` continues the same conversation
(an agent that finished and then gets a notice is resumed with it).

A model that repairs by undoing its own ops (the ScriptedModel) is `OpAware`: the loop hands
it an OpBook, where it records the op each tool call produced and the notices as given (not
only as rendered), with the environment's retract when the environment is `Retracting`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, Sequence, runtime_checkable

from coagent_cli.agents import prompts
from coagent_cli.agents.clock import Clock, SystemClock
from coagent_cli.agents.config import AgentConfig
from coagent_cli.agents.environment import (Environment, Notice, Observation, Retracting,
                                            ToolSchema, UsageSink)
from coagent_cli.agents.models import Message, Model, ModelReply, ToolCall, Usage
from coagent_cli.agents.trajectory import Trajectory
from coagent_cli.errors import CoagentError

StopReason = Literal["done", "max_steps", "max_tokens", "wall_time"]
BASH = "bash"


@dataclass(frozen=True)
class AgentResult:
    agent: str
    status: StopReason
    steps: int                 # model turns so far (run and resumes together)
    usage: Usage
    cost: float | None         # None when the price table has no entry for the model
    notices: int               # notices received so far
    time: float                # seconds spent inside run/resume
    summary: str | None        # the model's last text

    @property
    def ok(self) -> bool:
        return self.status == "done"


@dataclass
class OpBook:
    """What the loop shares with an OpAware model."""

    retract: Callable[[Sequence[int]], None] | None  # None: the environment cannot undo
    ops: dict[str, int] = field(default_factory=dict)  # tool call id -> the env's op id
    notices: list[Notice] = field(default_factory=list)  # injected, not yet taken

    def take_notices(self) -> list[Notice]:
        taken, self.notices = self.notices, []
        return taken


@dataclass(frozen=True)
class TakenUp:
    """An agent of a recovered run, as it was before the crash (run.continuation)."""

    messages: list[Message]               # its conversation, every tool call answered
    events: list[dict[str, Any]]          # its trajectory
    steps: int                            # model turns taken
    standing: tuple[int, ...]             # ops of its calls that stand
    rolled_back: tuple[int, ...]          # ops of its calls that recover rolled back
    note: str                             # what it is told about the crash


@runtime_checkable
class OpAware(Protocol):
    def bind_ops(self, book: OpBook) -> None: ...


class Agent:
    def __init__(self, name: str, task: str, *, model: Model, env: Environment,
                 config: AgentConfig | None = None, clock: Clock | None = None,
                 trajectory: Trajectory | None = None, taken_up: "TakenUp | None" = None) -> None:
        self.name, self.task = name, task
        self.model, self.env = model, env
        self.config = config or AgentConfig()
        self.clock = clock or SystemClock()
        self.trajectory = trajectory or Trajectory(None, name)
        self.messages: list[Message] = []
        self.steps = 0
        self.usage = Usage()
        self.notices = 0
        self.elapsed = 0.0
        self.summary: str | None = None
        self._tools: list[ToolSchema] = []
        self._tools_version: int | None = None
        self._step_refs: dict[int, prompts.StepRef] = {}  # env op id -> the step that ran it
        self._book = _bind(model, env)
        if taken_up is None:
            self._append({"role": "system", "content": prompts.system_prompt(name)})
            self._append({"role": "user", "content": task})
        else:
            self._take_up(taken_up)

    def _take_up(self, t: "TakenUp") -> None:
        """Continue where a crashed run left off: its trajectory is carried over, its
        conversation and turns restored, a model that keeps its own place (the scripted
        one) replays the trajectory, and the note says what the crash undid."""
        self.trajectory.carry_over(t.events)
        self.messages = [dict(m) for m in t.messages]
        self.steps = t.steps
        take_up = getattr(self.model, "take_up", None)
        if callable(take_up):
            take_up(list(t.events), list(t.standing), list(t.rolled_back))
        self._record("taken_up", steps=t.steps, standing=list(t.standing))
        self._append({"role": "user", "content": t.note})

    def run(self) -> AgentResult:
        started = self.clock.now()
        try:
            status = self._loop(started)
        except CoagentError as e:
            self._record("error", code=e.code, message=str(e))
            raise
        finally:
            self.elapsed += self.clock.now() - started
        self.env.finish()
        result = self.result(status)
        self._record("stop", status=status, steps=self.steps, usage=vars(self.usage),
                     cost=result.cost, notices=self.notices)
        return result

    def resume(self, notices: list[Notice]) -> AgentResult:
        self._inject(notices)
        return self.run()

    def result(self, status: StopReason) -> AgentResult:
        price = self.config.prices.get(self.model.name)
        return AgentResult(self.name, status, self.steps, self.usage, self.usage.cost(price),
                           self.notices, self.elapsed, self.summary)

    def _loop(self, started: float) -> StopReason:
        while True:
            limit = self._limit(started)
            if limit is not None:
                return limit
            self._inject(self.env.take_notices())
            self._refresh_tools()
            reply = self._query()
            if not reply.tool_calls:
                waiting = self.env.take_notices()
                if not waiting:
                    return "done"
                self._inject(waiting)
                continue
            for call in reply.tool_calls:
                self._execute(call)

    def _limit(self, started: float) -> StopReason | None:
        c = self.config
        if self.steps >= c.max_steps:
            return "max_steps"
        if c.max_tokens is not None and self.usage.total >= c.max_tokens:
            return "max_tokens"
        if c.wall_time is not None and self.elapsed + self.clock.now() - started >= c.wall_time:
            return "wall_time"
        return None

    def _inject(self, notices: list[Notice]) -> None:
        if not notices:
            return
        self.notices += len(notices)
        if self._book is not None:
            self._book.notices.extend(notices)
        for n in notices:
            self._record("notice", key=n.key, by=n.by, kind=n.kind, steps=list(n.steps),
                         detail=n.detail, diff=n.diff)
        text = prompts.render_notices(notices, self._step_refs, self.config.notice_diff_limit)
        self._append({"role": "user", "content": text})

    def _refresh_tools(self) -> None:
        version = self.env.tools_version
        if version == self._tools_version:
            return
        declared = [t for t in self.env.tools() if t.name != BASH]
        self._tools = [_bash_schema()] + declared
        self._tools_version = version
        self._record("tools", version=version, names=[t.name for t in self._tools])

    def _query(self) -> ModelReply:
        self.steps += 1
        reply = self.model.query(self.messages, self._tools)
        self.usage = self.usage + reply.usage
        if isinstance(self.env, UsageSink):
            price = self.config.prices.get(self.model.name)
            self.env.report_usage(reply.usage.total, reply.usage.cost(price) or 0.0)
        if reply.text:
            self.summary = reply.text
        self._append(reply.message(), usage=vars(reply.usage), step=self.steps)
        return reply

    def _execute(self, call: ToolCall) -> None:
        obs = self._observe(call)
        if obs.op_id is not None:
            self._step_refs[obs.op_id] = prompts.StepRef(self.steps, _label(call))
            if self._book is not None:
                self._book.ops[call.id] = obs.op_id
        content = prompts.render_observation(obs, self.config.observation_limit)
        self._append({"role": "tool", "tool_call_id": call.id, "content": content},
                     exit_status=obs.exit_status, op_id=obs.op_id)

    def _observe(self, call: ToolCall) -> Observation:
        args = _arguments(call)
        if isinstance(args, str):
            return Observation(args, 2)
        offered = {t.name for t in self._tools}
        if call.name not in offered:
            return Observation(f"error: no tool named {call.name!r} "
                               f"(offered: {', '.join(sorted(offered))})", 2)
        try:
            if call.name == BASH:
                return self._bash(args)
            return self.env.call_tool(call.name, args)
        except CoagentError as e:  # a refused call is the model's to fix, not a crash
            return Observation(f"error ({e.code}): {e}", 2)

    def _bash(self, args: dict[str, Any]) -> Observation:
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            return Observation("error: bash needs a non-empty string `command`", 2)
        return self.env.bash(command)

    def _append(self, message: Message, **extra: Any) -> None:
        self.messages.append(message)
        self._record("message", message=message, **extra)

    def _record(self, event: str, **fields: Any) -> None:
        self.trajectory.record(event, self.clock.now(), **fields)


def _bind(model: Model, env: Environment) -> OpBook | None:
    if not isinstance(model, OpAware):
        return None
    book = OpBook(env.retract if isinstance(env, Retracting) else None)
    model.bind_ops(book)
    return book


def _bash_schema() -> ToolSchema:
    return ToolSchema(BASH, prompts.BASH_TOOL_DESCRIPTION, prompts.BASH_PARAMETERS)


def _arguments(call: ToolCall) -> dict[str, Any] | str:
    """The call's arguments, or an error text for the model when they do not parse."""
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as e:
        return f"error: the arguments of {call.name} are not valid JSON ({e})"
    if not isinstance(args, dict):
        return f"error: the arguments of {call.name} must be a JSON object"
    return args


def _label(call: ToolCall) -> str:
    args = _arguments(call)
    if call.name == BASH and isinstance(args, dict):
        return f"bash: {str(args.get('command', ''))[:80]}"
    shown = json.dumps(args)[:80] if isinstance(args, dict) else "?"
    return f"{call.name} {shown}"
