"""The offline model: plays a per-agent script of tool calls, and repairs after notices.

It goes through the same loop as an LLM (same messages in, same ModelReply out), so demos,
tests and benchmarks exercise the real machinery without a network. One reply carries at
most one tool call; `think` steps spend time on the injected clock before the next call.

The repair rule, on a notice message naming keys K (it reads the notice the loop rendered):
  1. re-read each K (read_file when that tool is offered, else `cat`; `ls` for a dir key),
  2. redo the already-played steps that depended on K: those declaring `after_read` of a
     path under K when the script declares any, else every step from the first one that
     touched K (a tool param or a command line naming its path) to the last one played,
then continue with the rest of the script. A redone step runs its same command on the new
base, so scripts put recomputations (not blind appends) after the reads they depend on.

Token usage is an estimate (4 characters a token of the request and of the reply) so runs
of the scripted model can still compare protocols by token cost.
"""

from __future__ import annotations

import json
import shlex
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

from coagent_cli.agents.clock import Clock, SystemClock
from coagent_cli.agents.config import SCRIPTED, Script, ScriptStep, ToolStep
from coagent_cli.agents.environment import ToolSchema
from coagent_cli.agents.models import Message, ModelReply, ToolCall, Usage
from coagent_cli.agents.prompts import notice_keys

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class _Pending:
    step: ScriptStep
    index: int | None  # position in the script; None for a repair's re-read


class ScriptedModel:
    def __init__(self, script: Script | list[Any] | dict[str, Any], *,
                 clock: Clock | None = None) -> None:
        self.name = SCRIPTED
        self.script = script if isinstance(script, Script) else Script.model_validate(script)
        self.clock = clock or SystemClock()
        self.repairs = 0  # notice messages answered with a repair
        self._queue = deque(_Pending(s, i) for i, s in enumerate(self.script.steps))
        self._played: list[int] = []  # script indices, in the order played
        self._seen = 0  # messages already scanned for notices
        self._calls = 0

    def query(self, messages: list[Message], tools: list[ToolSchema]) -> ModelReply:
        keys = self._new_notice_keys(messages)
        if keys:
            self._plan_repair(keys, {t.name for t in tools})
        while self._queue:
            item = self._queue.popleft()
            if item.step.think is not None:
                self.clock.sleep(item.step.think)
                continue
            if item.index is not None:
                self._played.append(item.index)
            return self._reply(messages, self._call(item.step))
        return self._reply(messages, None)

    def close(self) -> None:
        return None

    def _new_notice_keys(self, messages: list[Message]) -> list[str]:
        fresh, self._seen = messages[self._seen:], len(messages)
        keys: list[str] = []
        for m in fresh:
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                keys += [k for k in notice_keys(m["content"]) if k not in keys]
        return keys

    def _plan_repair(self, keys: list[str], offered: set[str]) -> None:
        self.repairs += 1
        pause = self.script.repair_think
        think = [_Pending(ScriptStep(think=pause), None)] if pause > 0 else []
        reads = [_Pending(s, None) for k in keys for s in _reread(k, offered)]
        plan = think + reads + self._dependent(keys)
        self._queue.extendleft(reversed(plan))

    def _dependent(self, keys: list[str]) -> list[_Pending]:
        paths = [p for p in map(_key_path, keys) if p is not None]
        played = sorted(set(self._played))
        steps = self.script.steps
        if any(s.after_read for s in steps):
            return [_Pending(steps[i], i) for i in played
                    if any(_related(a, p) for a in steps[i].after_read for p in paths)]
        first = next((i for i in played if _touches(steps[i], paths)), None)
        if first is None:
            return []
        return [_Pending(steps[i], i) for i in range(first, played[-1] + 1)]

    def _call(self, step: ScriptStep) -> ToolCall:
        self._calls += 1
        call_id = f"call_{self._calls}"
        if step.bash is not None:
            return ToolCall(call_id, "bash", json.dumps({"command": step.bash}))
        assert step.tool is not None
        return ToolCall(call_id, step.tool.name, json.dumps(step.tool.params))

    def _reply(self, messages: list[Message], call: ToolCall | None) -> ModelReply:
        text = None if call is not None else self.script.final
        said = call.arguments if call is not None else self.script.final
        usage = Usage(_tokens(json.dumps(messages)), _tokens(said))
        return ModelReply(text, [call] if call is not None else [], usage)


def _tokens(text: str) -> int:
    return max(1, len(text) // CHARS_PER_TOKEN)


def _key_path(key: str) -> str | None:
    scheme, _, rest = key.partition(":")
    return rest if scheme in ("file", "dir") else None


def _related(a: str, b: str) -> bool:
    """Same path, or one lies under the other (a dir key covers what is below it)."""
    a, b = a.strip("/"), b.strip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/") or not a or not b


def _touches(step: ScriptStep, paths: list[str]) -> bool:
    if step.bash is not None:
        return any(p.strip("/") and p.strip("/") in step.bash for p in paths)
    if step.tool is not None:
        values = [v for v in _strings(step.tool.params.values())]
        return any(_related(v, p) for v in values for p in paths)
    return False


def _strings(values: Iterable[Any]) -> Iterable[str]:
    for v in values:
        if isinstance(v, str):
            yield v
        elif isinstance(v, list):
            yield from (x for x in v if isinstance(x, str))


def _reread(key: str, offered: set[str]) -> list[ScriptStep]:
    scheme, _, path = key.partition(":")
    if scheme == "file" and "read_file" in offered:
        return [ScriptStep(tool=ToolStep(name="read_file", params={"path": path}))]
    if scheme == "file":
        return [ScriptStep(bash=f"cat -- {shlex.quote(path)}")]
    if scheme == "dir":
        return [ScriptStep(bash=f"ls -la -- {shlex.quote(path or '.')}")]
    if scheme == "git":
        return [ScriptStep(bash="git status --short && git log --oneline -3")]
    return []
