"""An in-memory environment: key -> value, with real undo and redo.

It performs the core's effects exactly as the real executor does on files: before-
and after-images per op, a content-addressed store of every value (so a read can be
served "as of" any digest), re-execution of an op's meaning on a new base. It checks
the core as it goes: undoing an op whose after-image is not the live value means the
core ordered effects wrongly, and raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from coagent_cli.core.keys import Key
from coagent_cli.core.model import ABSENT, Change, Digest
from coagent_cli.errors import ExecutionError
from coagent_cli.sim.program import OpStep, Outcome, Value, perform


def digest(value: Value) -> Digest:
    return ABSENT if value is None else "v:" + value


@dataclass
class PendingOp:
    """What the environment needs to (re)run an op: the step and the agent's memory."""

    step: OpStep
    agent: str
    index: int
    memory: Mapping[str, object]


@dataclass
class Images:
    before: dict[Key, Value] = field(default_factory=dict)
    after: dict[Key, Value] = field(default_factory=dict)
    applied: bool = False
    ever_applied: bool = False  # False for a shadowed op never put in place


class MemoryEnv:
    def __init__(self, initial: Mapping[str, str] | None = None) -> None:
        self.state: dict[Key, str] = {Key.parse(k): v for k, v in (initial or {}).items()}
        self.blobs: dict[Digest, Value] = {ABSENT: None}
        self.ops: dict[int, PendingOp] = {}
        self.images: dict[int, Images] = {}
        self.results: dict[int, Outcome] = {}
        self.published: list[tuple[object, ...]] = []
        for v in self.state.values():
            self.blobs[digest(v)] = v

    # ------------------------------------------------------------------- views

    def get(self, key: Key) -> Value:
        return self.state.get(key)

    def keys_under(self, pattern: Key, extra: Mapping[Key, Value] | None = None) -> list[Key]:
        names = set(self.state) | set(extra or {})
        return sorted(k for k in names if pattern.covers(k))

    def _run(self, op_id: int, view: Callable[[Key], Value], extra: Mapping[Key, Value] | None = None) -> Outcome:
        p = self.ops[op_id]
        return perform(p.step, p.agent, p.index, p.memory, view, lambda k: self.keys_under(k, extra))

    # ----------------------------------------------------------------- effects

    def execute(self, op_id: int, *, shadowed: bool = False) -> dict[Key, Change]:
        out = self._run(op_id, self.get)
        self.results[op_id] = out
        if out.published is not None:
            self.published.append(out.published)
        img = Images(applied=not shadowed, ever_applied=not shadowed)
        for k, v in out.writes.items():
            img.before[k] = self.get(k)
            img.after[k] = v
            if not shadowed:
                self._set(k, v)
            self.blobs[digest(v)] = v
        self.images[op_id] = img
        return {k: Change(digest(img.before[k]), digest(v)) for k, v in out.writes.items()}

    def serve(self, op_id: int, sources: Mapping[Key, Digest]) -> None:
        overlay = {k: self.blobs[d] for k, d in sources.items()}

        def view(k: Key) -> Value:
            return overlay[k] if k in overlay else self.get(k)

        self.results[op_id] = self._run(op_id, view, overlay)

    def undo(self, op_id: int) -> None:
        img = self.images[op_id]
        if not img.applied:
            raise ExecutionError(f"undo of op {op_id}, which is not applied")
        for k, after in img.after.items():
            if self.get(k) != after:
                raise ExecutionError(f"undo of op {op_id}: {k} is {self.get(k)!r}, not its after-image {after!r}")
        for k, before in img.before.items():
            self._set(k, before)
        img.applied = False

    def redo(self, op_id: int, *, base_changed: bool) -> tuple[bool, dict[Key, Change], str]:
        img = self.images[op_id]
        if img.applied:
            raise ExecutionError(f"redo of op {op_id}, which is applied")
        moved = any(self.get(k) != b for k, b in img.before.items())
        if not base_changed and img.ever_applied and moved:
            raise ExecutionError(f"redo of op {op_id}: told its base is unchanged, but it changed")
        out = self._run(op_id, self.get)
        if out.failed:
            return False, {}, "the op no longer applies on the new base"
        new = Images(applied=True, ever_applied=True)
        for k, v in out.writes.items():
            new.before[k] = self.get(k)
            new.after[k] = v
            self._set(k, v)
            self.blobs[digest(v)] = v
        self.images[op_id] = new
        return True, {k: Change(digest(new.before[k]), digest(v)) for k, v in out.writes.items()}, ""

    def _set(self, key: Key, value: Value) -> None:
        if value is None:
            self.state.pop(key, None)
        else:
            self.state[key] = value

    def snapshot(self) -> dict[str, str]:
        return {str(k): v for k, v in sorted(self.state.items())}

