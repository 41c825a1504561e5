"""The offline model: plays a per-agent script of tool calls, and repairs after notices.

It goes through the same loop as an LLM (same messages in, same ModelReply out), so demos,
tests and benchmarks exercise the real machinery without a network. One reply carries at
most one tool call; `think` steps spend time on the injected clock before the next call.

The repair, when the environment can retract (the daemon's: it re-applies this agent's
misplaced writes and re-runs its misplaced command lines on the new base by itself) and no
step declares `after_read`:
  on stale_read or write_dropped notices (write_reordered needs nothing), take the earliest
  played step whose op a notice names; retract this agent's ops from that step on (undone
  for good: the environment re-applies later writes of others on top and tells them), and
  replay the script from that step. Re-reading is wrong there: a read would see this agent's
  own later writes, already re-applied; and re-running a step would apply it twice. This is
  the simulator's rule, proven serializable by its property tests.

Otherwise (LocalEnvironment: nothing is re-applied; or a script that declares with
`after_read` which steps derive from reads, and so that its other writes are edits the
environment may merge onto a new base), on notices naming keys K (write_reordered aside):
  1. re-read each K (read_file when that tool is offered, else `cat`; `ls` for a dir key),
  2. redo the already-played steps that depended on K: those declaring `after_read` of a
     path under K when the script declares any, else every step from the first one that
     touched K (a tool param or a command line naming its path) to the last one played,
then continue with the rest of the script. A redone step runs its same command on the new
base, so scripts put recomputations (not blind appends) after the reads they depend on.

The loop tells the model the op of each of its tool calls, the notices, and the retract,
through an OpBook (see loop.py); used outside a loop, it reads the notice keys from the
rendered notice messages and repairs without retract.

Token usage is an estimate (4 characters a token of the request and of the reply) so runs
of the scripted model can still compare protocols by token cost.
"""

from __future__ import annotations

import json
import shlex
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from coagent_cli.agents.clock import Clock, SystemClock
from coagent_cli.agents.config import SCRIPTED, Script, ScriptStep, ToolStep
from coagent_cli.agents.environment import Notice, ToolSchema
from coagent_cli.agents.models import Message, ModelReply, ToolCall, Usage
from coagent_cli.agents.prompts import notice_keys
from coagent_cli.errors import ExecutionError

if TYPE_CHECKING:
    from coagent_cli.agents.loop import OpBook  # the loop imports models, which imports us

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class _Pending:
    step: ScriptStep
    index: int | None  # position in the script; None for a repair's re-read


class _NoWait:
    """A clock whose sleep returns at once (replaying a trajectory)."""

    def now(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        return None


class ScriptedModel:
    def __init__(self, script: Script | list[Any] | dict[str, Any], *,
                 clock: Clock | None = None) -> None:
        self.name = SCRIPTED
        self.script = script if isinstance(script, Script) else Script.model_validate(script)
        self.clock = clock or SystemClock()
        self.repairs = 0  # notice messages answered with a repair
        self._queue = deque(_Pending(s, i) for i, s in enumerate(self.script.steps))
        self._played: list[int] = []  # script indices, in the order played
        # (script index, tool call id) of the played steps not retracted, in play order
        self._trail: list[tuple[int, str]] = []
        self._book: OpBook | None = None
        self._seen = 0  # messages already scanned for notices
        self._calls = 0
        self._last: _Pending | None = None  # the step of the latest call

    def bind_ops(self, book: "OpBook") -> None:
        self._book = book

    def query(self, messages: list[Message], tools: list[ToolSchema]) -> ModelReply:
        self._take_notices(messages, {t.name for t in tools})
        while self._queue:
            item = self._queue.popleft()
            if item.step.think is not None:
                self.clock.sleep(item.step.think)
                continue
            call = self._call(item.step)
            self._last = item
            if item.index is not None:
                self._played.append(item.index)
                self._trail.append((item.index, call.id))
            return self._reply(messages, call)
        return self._reply(messages, None)

    def close(self) -> None:
        return None

    def take_up(self, events: list[dict[str, Any]], standing: list[int], rolled_back: list[int]) -> None:
        """Continue a run recovered after a crash. The model is deterministic, so it
        replays its own trajectory (the notices it was given, the calls it made, the op
        of each) without touching anything, to reach the place it was at; then every
        call the crash undid is queued again, first: its op was rolled back by recover,
        or its result was never recorded and no standing op of `standing` accounts for it
        (it never ran). A call answered without an op (refused, say) stays answered.
        Raises ExecutionError when the trajectory is not this script's."""
        book = self._book
        if book is None:
            raise ExecutionError("take_up needs the loop's OpBook", code="cannot_take_up")
        clock, retract, self.clock = self.clock, book.retract, _NoWait()
        book.retract = None if retract is None else (lambda ops: None)
        issued: dict[str, _Pending] = {}
        answered: set[str] = set()
        offered: list[ToolSchema] = []
        try:
            for e in events:
                if e.get("event") == "tools":  # what the loop offered from then on
                    offered = [ToolSchema(str(n), "", {}) for n in e.get("names", [])]
                self._replay_one(e, book, issued, answered, offered)
        finally:
            self.clock, book.retract = clock, retract
        known = set(book.ops.values())
        extra = [o for o in standing if o not in known]  # an op whose result the crash cut off
        undone = set(rolled_back)
        again: list[_Pending] = []
        for call_id, item in issued.items():
            op = book.ops.get(call_id)
            if op is None and call_id in answered:
                continue  # it ran and made no op
            if op is None and extra:
                book.ops[call_id] = extra.pop(0)
            elif op is None or op in undone:
                again.append(item)
                self._trail = [(i, c) for i, c in self._trail if c != call_id]
        self._queue.extendleft(reversed(again))

    def _replay_one(self, e: dict[str, Any], book: "OpBook", issued: dict[str, "_Pending"],
                    answered: set[str], offered: list[ToolSchema]) -> None:
        if e.get("event") == "notice":
            book.notices.append(Notice(e["key"], e["by"], e.get("kind", "stale_read"), e.get("detail", ""),
                                       e.get("diff"), tuple(e.get("steps", ()))))
            return
        message = e.get("message") if e.get("event") == "message" else None
        if not isinstance(message, dict):
            return
        if message.get("role") == "tool":
            answered.add(str(message.get("tool_call_id")))
            if e.get("op_id") is not None:
                book.ops[str(message.get("tool_call_id"))] = int(e["op_id"])
        if message.get("role") != "assistant":
            return
        reply = self.query([], offered)
        recorded = message.get("tool_calls") or []
        made = [(c.id, c.name, c.arguments) for c in reply.tool_calls]
        wanted = [(c.get("id"), c.get("function", {}).get("name"), c.get("function", {}).get("arguments"))
                  for c in recorded]
        if made != wanted:
            raise ExecutionError(f"the trajectory is not this script's (replayed {made}, recorded {wanted})",
                                 code="cannot_take_up")
        for call_id, _, _ in made:
            assert self._last is not None
            issued[call_id] = self._last

    def _take_notices(self, messages: list[Message], offered: set[str]) -> None:
        fresh, self._seen = messages[self._seen:], len(messages)
        if self._book is None:
            keys = _notice_keys(fresh)
        else:
            notices = [n for n in self._book.take_notices() if n.kind != "write_reordered"]
            if notices and self._book.retract is not None and not self._declares_reads():
                self._retract_and_replay(notices, self._book)
                return
            keys = list(dict.fromkeys(n.key for n in notices))
        if keys:
            self._plan_repair(keys, offered)

    def _declares_reads(self) -> bool:
        return any(s.after_read for s in self.script.steps)

    def _retract_and_replay(self, notices: list[Notice], book: "OpBook") -> None:
        assert book.retract is not None
        named = {o for n in notices for o in n.steps}
        trail = [(i, book.ops.get(c)) for i, c in self._trail]
        start = min((i for i, o in trail if o in named), default=None)
        if start is None:
            return  # the notices name no op of the current play (one retracted already)
        self.repairs += 1
        book.retract([o for i, o in trail if i >= start and o is not None])
        self._trail = [(i, c) for i, c in self._trail if i < start]
        pause = self.script.repair_think
        think = [_Pending(ScriptStep(think=pause), None)] if pause > 0 else []
        replay = [_Pending(s, i) for i, s in enumerate(self.script.steps) if i >= start]
        self._queue = deque(think + replay)

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


def _notice_keys(messages: list[Message]) -> list[str]:
    keys: list[str] = []
    for m in messages:
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            keys += [k for k in notice_keys(m["content"]) if k not in keys]
    return keys


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
