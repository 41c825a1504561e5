"""Driving a controller synchronously: perform each effect at once and feed its
completion back, until nothing is left.

The daemon does this asynchronously (effects in threads, several sequences at once)
and the simulator with virtual delays; the benchmark, the named-scenario harness and
executor tests need only this plain loop.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Protocol

from coagent_cli.core.engine import Engine
from coagent_cli.core.keys import Key
from coagent_cli.core.model import (
    Action,
    Change,
    Digest,
    Event,
    Execute,
    OpExecuted,
    OpRedone,
    OpUndone,
    Redo,
    ServeRead,
    Undo,
)


class Effects(Protocol):
    """What performs the four effects: the in-memory environment, or an adapter over
    a real executor."""

    def execute(self, op_id: int, *, shadowed: bool = False) -> Mapping[Key, Change]: ...

    def serve(self, op_id: int, sources: Mapping[Key, Digest]) -> None: ...

    def undo(self, op_id: int) -> None: ...

    def redo(self, op_id: int, *, base_changed: bool) -> tuple[bool, Mapping[Key, Change], str]: ...


def perform(action: Action, effects: Effects) -> Event | None:
    """Perform one effect; its completion event, or None when the action is no effect."""
    if isinstance(action, Execute):
        return OpExecuted(action.op_id, effects.execute(action.op_id, shadowed=action.shadowed))
    if isinstance(action, ServeRead):
        effects.serve(action.op_id, action.sources)
        return OpExecuted(action.op_id, {})
    if isinstance(action, Undo):
        effects.undo(action.op_id)
        return OpUndone(action.op_id)
    if isinstance(action, Redo):
        ok, writes, reason = effects.redo(action.op_id, base_changed=action.base_changed)
        return OpRedone(action.op_id, ok, writes, reason)
    return None


def drain(core: Engine, actions: Iterable[Action], effects: Effects,
          react: Callable[[Action], Iterable[Event]] | None = None) -> None:
    """Act on every action in order, feeding back completions and whatever `react`
    answers to the others (a notice taken, a resumed agent finishing...)."""
    pending = list(actions)
    while pending:
        action = pending.pop(0)
        done = perform(action, effects)
        events = [done] if done is not None else []
        if react is not None:
            events.extend(react(action))
        for event in events:
            pending.extend(core.handle(event))
