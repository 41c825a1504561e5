"""Rebuilding a controller from the events it was fed.

The core is a pure, deterministic state machine: the same events in the same order
give the same state and the same actions. The daemon journals every event it feeds
and every action it gets back (daemon.journaling), so after a crash a fresh controller
fed the journaled events reaches the dead one's state exactly. What it cannot know from
events alone is which effects were still being performed: those are the effects it
emitted whose completion event never came (`Replay.pending`). Whoever resumes the run
performs them, or finds them already performed, and feeds their completions.

Replaying also checks itself: given the journaled actions of each event, it compares
them with the ones the fresh controller emits and stops at the first difference
(`ReplayDiverged`) rather than resume a run from a state nobody had.

Pure: no I/O. Events and actions travel as JSON-ready data (`to_json`, `event_from_json`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Callable, Iterable, Mapping

from coagent_cli.core.engine import Engine
from coagent_cli.core.keys import Key
from coagent_cli.core.model import (
    Action,
    AgentFinished,
    AgentRegistered,
    AgentResumed,
    Change,
    Event,
    Execute,
    NoticesTaken,
    OpExecuted,
    OpRedone,
    OpRequested,
    OpSpec,
    OpUndone,
    Redo,
    RetractRequested,
    ServeRead,
    Undo,
    is_effect,
)
from coagent_cli.errors import ProtocolError

__all__ = ["Replay", "ReplayDiverged", "event_from_json", "kind_of", "to_json", "replay"]

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class ReplayDiverged(ProtocolError):
    """The journaled events do not rebuild the journaled decisions."""

    code = "replay_diverged"


def kind_of(item: Any) -> str:
    """The snake-case name an event or action is journaled under (`OpRequested` ->
    `op_requested`)."""
    return _CAMEL.sub("_", type(item).__name__).lower()


def to_json(value: Any) -> Any:
    """A core event or action as JSON-ready data (keys as strings, sets sorted)."""
    if isinstance(value, Key):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (frozenset, set)):
        return sorted(to_json(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def event_from_json(kind: str, data: Mapping[str, Any]) -> Event:
    """The inverse of `to_json` for events; ProtocolError on anything else."""
    decode = _DECODERS.get(kind)
    if decode is None:
        raise ProtocolError(f"not a core event: {kind!r}", code="bad_event")
    try:
        return decode(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed {kind} event: {exc}", code="bad_event") from exc


def _keys(items: Iterable[str] | None) -> frozenset[Key]:
    return frozenset(Key.parse(k) for k in items or ())


def _changes(data: Mapping[str, Any]) -> dict[Key, Change]:
    return {Key.parse(k): Change(c["before"], c["after"]) for k, c in data.items()}


def _spec(d: Mapping[str, Any]) -> OpSpec:
    observes = d.get("observes")
    return OpSpec(op_id=int(d["op_id"]), agent=str(d["agent"]), reads=_keys(d.get("reads")),
                  writes=_keys(d.get("writes")),
                  observes=None if observes is None else _keys(observes),
                  overwrites=_keys(d.get("overwrites")), reversible=bool(d.get("reversible", True)),
                  servable=bool(d.get("servable", False)), label=str(d.get("label", "")))


_DECODERS: dict[str, Callable[[Mapping[str, Any]], Event]] = {
    "agent_registered": lambda d: AgentRegistered(str(d["agent"]), int(d["rank"])),
    "op_requested": lambda d: OpRequested(_spec(d["op"])),
    "op_executed": lambda d: OpExecuted(int(d["op_id"]), _changes(d.get("writes", {}))),
    "op_undone": lambda d: OpUndone(int(d["op_id"])),
    "op_redone": lambda d: OpRedone(int(d["op_id"]), bool(d["ok"]), _changes(d.get("writes", {})),
                                    str(d.get("reason", ""))),
    "agent_finished": lambda d: AgentFinished(str(d["agent"])),
    "agent_resumed": lambda d: AgentResumed(str(d["agent"])),
    "notices_taken": lambda d: NoticesTaken(str(d["agent"]), tuple(int(i) for i in d["notice_ids"])),
    "retract_requested": lambda d: RetractRequested(int(d["request_id"]), str(d["agent"]),
                                                    tuple(int(i) for i in d["op_ids"])),
}

_COMPLETES: dict[type, tuple[type, ...]] = {
    OpExecuted: (Execute, ServeRead),
    OpUndone: (Undo,),
    OpRedone: (Redo,),
}


@dataclass
class Replay:
    """A controller being rebuilt. Feed it the journaled events in order."""

    core: Engine
    pending: dict[int, Action] = field(default_factory=dict)  # op id -> effect not yet completed
    fed: int = 0

    def feed(self, event: Event, recorded: list[Mapping[str, Any]] | None = None) -> list[Action]:
        """Feed one event; with `recorded` (the journaled actions, as JSON), raise
        ReplayDiverged unless the controller decides exactly the same."""
        self._complete(event)
        actions = self.core.handle(event)
        self.fed += 1
        if recorded is not None:
            got = [{"kind": kind_of(a), **to_json(a)} for a in actions]
            if got != [dict(r) for r in recorded]:
                raise ReplayDiverged(f"event {self.fed} ({kind_of(event)}) rebuilt {_names(got)} "
                                     f"where the journal has {_names(recorded)}")
        self.track(actions)
        return actions

    def track(self, actions: Iterable[Action]) -> None:
        """Note the effects among `actions` as pending (also for actions of a live run)."""
        for a in actions:
            if is_effect(a):
                op_id = a.op_id  # type: ignore[attr-defined]
                if op_id in self.pending:
                    raise ReplayDiverged(f"two effects at once on op {op_id}")
                self.pending[op_id] = a

    def _complete(self, event: Event) -> None:
        kinds = _COMPLETES.get(type(event))
        if kinds is None:
            return
        op_id = event.op_id  # type: ignore[union-attr]
        effect = self.pending.pop(op_id, None)
        if effect is None or not isinstance(effect, kinds):
            raise ReplayDiverged(f"{kind_of(event)} of op {op_id}, which had no such effect under way")


def replay(core: Engine, events: Iterable[tuple[Event, list[Mapping[str, Any]] | None]]) -> Replay:
    """Rebuild `core` (fresh) from (event, journaled actions) pairs; the pending effects
    are in the result, in the order they were emitted."""
    rebuilt = Replay(core)
    for event, recorded in events:
        rebuilt.feed(event, recorded)
    return rebuilt


def _names(actions: Iterable[Mapping[str, Any]]) -> str:
    return "[" + ", ".join(f"{a.get('kind')}({a.get('op_id', a.get('agent', ''))})" for a in actions) + "]"
