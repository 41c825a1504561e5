"""Agent programs for the simulator: steps of thinking, reads, and writes that are
real functions of what was read.

A program is deterministic given the values it reads, so the serial run of the
programs in rank order is a well-defined oracle for every controller.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Mapping, Union

from coagent_cli.core.keys import ALL, Key
from coagent_cli.core.model import OpSpec


@dataclass(frozen=True)
class Think:
    """Inference time: the agent is busy and holds nothing."""

    duration: int


@dataclass(frozen=True)
class Read:
    """Look at keys (files, or covering keys like `dir:src`); the agent remembers
    what it saw. servable: a read_file-like tool the store can serve from versions."""

    keys: tuple[str, ...]
    servable: bool = True
    cost: int = 1


@dataclass(frozen=True)
class Write:
    """Write a whole value computed from what was read before (blind if no inputs)."""

    key: str
    inputs: tuple[str, ...] = ()
    cost: int = 1


@dataclass(frozen=True)
class Append:
    """A declared tool that modifies in one op (read-modify-write inside the tool);
    its redo re-applies the append on whatever the new base is."""

    key: str
    token: str
    cost: int = 1


@dataclass(frozen=True)
class Replace:
    """Replace a token; fails (and on redo: is dropped) when the token is absent."""

    key: str
    old: str
    new: str
    cost: int = 1


@dataclass(frozen=True)
class Emit:
    """Irreversible: publish the current values of some keys (a deploy, a mail)."""

    inputs: tuple[str, ...]
    cost: int = 1


@dataclass(frozen=True)
class Raw:
    """An unknown command: footprint `*`; it reads everything and rewrites `key`."""

    key: str
    cost: int = 1


Step = Union[Think, Read, Write, Append, Replace, Emit, Raw]
Program = tuple[Step, ...]
OpStep = Union[Read, Write, Append, Replace, Emit, Raw]

Value = str | None  # None: the key does not exist
View = Callable[[Key], Value]


def derive(agent: str, index: int, inputs: Mapping[str, object]) -> str:
    """The value an agent computes at a step from what it read: a short, stable hash."""
    text = repr((agent, index, sorted((k, repr(v)) for k, v in inputs.items())))
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def spec_for(step: OpStep, op_id: int, agent: str) -> OpSpec:
    label = type(step).__name__.lower()
    if isinstance(step, Read):
        ks = frozenset(Key.parse(k) for k in step.keys)
        return OpSpec(op_id, agent, reads=ks, servable=step.servable, label=label)
    if isinstance(step, Write):
        k = frozenset({Key.parse(step.key)})
        return OpSpec(op_id, agent, writes=k, overwrites=k, observes=frozenset(), label=label)
    if isinstance(step, (Append, Replace)):
        k = frozenset({Key.parse(step.key)})
        return OpSpec(op_id, agent, reads=k, writes=k, observes=frozenset(), label=label)
    if isinstance(step, Emit):
        ks = frozenset(Key.parse(k) for k in step.inputs)
        return OpSpec(op_id, agent, reads=ks, reversible=False, label=label)
    all_ = frozenset({ALL})
    return OpSpec(op_id, agent, reads=all_, writes=all_, label=label)


@dataclass
class Outcome:
    """What an op did: new values per key, what the agent saw, and whether it failed."""

    writes: dict[Key, Value]
    seen: dict[str, object]
    failed: bool = False
    published: tuple[object, ...] | None = None


def perform(step: OpStep, agent: str, index: int, memory: Mapping[str, object], view: View,
            keys_under: Callable[[Key], list[Key]]) -> Outcome:
    """Run one op step against a view of the state. Pure: the caller applies writes."""
    if isinstance(step, Read):
        seen: dict[str, object] = {}
        for text in step.keys:
            k = Key.parse(text)
            if k.is_concrete:
                seen[text] = view(k)
            else:
                seen[text] = tuple((str(c), view(c)) for c in keys_under(k) if view(c) is not None)
        return Outcome({}, seen)
    if isinstance(step, Write):
        inputs = {k: memory.get(k) for k in step.inputs}
        return Outcome({Key.parse(step.key): derive(agent, index, inputs)}, {})
    if isinstance(step, Append):
        k = Key.parse(step.key)
        return Outcome({k: (view(k) or "") + step.token}, {})
    if isinstance(step, Replace):
        k = Key.parse(step.key)
        cur = view(k) or ""
        if step.old not in cur:
            return Outcome({}, {}, failed=True)
        return Outcome({k: cur.replace(step.old, step.new, 1)}, {})
    if isinstance(step, Emit):
        values = tuple((k, view(Key.parse(k))) for k in step.inputs)
        return Outcome({}, {}, published=(agent, values))
    everything = keys_under(ALL)
    snapshot = {str(c): view(c) for c in everything if view(c) is not None}
    return Outcome({Key.parse(step.key): derive(agent, index, snapshot)}, {})
