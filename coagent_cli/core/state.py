"""What the engine keeps: each agent's state, each running sequence, and its counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from coagent_cli.core.keys import Key
from coagent_cli.core.model import Action, Notice

AgentStatus = Literal["registered", "running", "finished", "settled"]
# A queued request: its (rank, seq) order and a retry that returns None to keep waiting.
Retry = Callable[[], list[Action] | None]
Waiting = dict[int, tuple[tuple[int, int], Retry]]
# Keys wanted by ops waiting for latches: op id -> (rank, reads, writes).
Reserved = dict[int, tuple[int, frozenset[Key], frozenset[Key]]]


@dataclass(slots=True)
class AgentState:
    name: str
    rank: int
    status: AgentStatus = "registered"
    inbox: dict[int, Notice] = field(default_factory=dict)
    in_flight: int | None = None  # the op id it waits on
    aborting: bool = False
    steps: int = 0


@dataclass
class Stats:
    executed: int = 0
    served: int = 0
    undos: int = 0
    redos: int = 0
    drops: int = 0
    notices: int = 0
    waits: int = 0
    holds: int = 0
    refusals: int = 0
    aborts: int = 0
    restarts: int = 0
    resumes: int = 0
    shadowed: int = 0
    collected: int = 0
    peak_versions: int = 0


@dataclass
class Sequence:
    sid: int
    actor: str
    owner: int | None = None  # op or request completed by this sequence
    execute: int | None = None
    serve: bool = False
    shadowed: bool = False
    undo: list[int] = field(default_factory=list)
    materialise: list[int] = field(default_factory=list)
    redo: list[int] = field(default_factory=list)
    remove: set[int] = field(default_factory=set)  # undone for good
    restart: set[str] = field(default_factory=set)
    latch_r: frozenset[Key] = frozenset()
    latch_w: frozenset[Key] = frozenset()
    current: int | None = None
    bases: dict[int, dict[Key, str | None]] = field(default_factory=dict)  # what lay under each undone op
    touched: set[Key] = field(default_factory=set)
    reordered: dict[int, dict[Key, str]] = field(default_factory=dict)  # op -> after-images it had
    dropped: set[int] = field(default_factory=set)
    executed: bool = False
    members: frozenset[int] = frozenset()  # every op it touches, fixed when it starts

    def freeze(self) -> None:
        ids = set(self.undo) | set(self.materialise) | set(self.redo) | self.remove
        self.members = frozenset(ids | ({self.execute} if self.execute is not None else set()))
