"""Events into and actions out of the protocol core.

The core is a state machine in the style of h11: an adapter feeds it `Event`s through
`Controller.handle` and gets back a list of `Action`s. Nothing here touches a file, a
socket or a clock.

Three actions are *effects* on the live state: `Execute`, `ServeRead`, `Undo` and
`Redo`. The adapter performs each effect and answers it with exactly one completion
event (`OpExecuted` for Execute and ServeRead, `OpUndone`, `OpRedone`). Effects of one
sequence are emitted one at a time, so an adapter may simply loop: perform the effect,
feed back its completion, act on what comes back. Effects of different sequences never
touch overlapping keys (the core latches them), so an adapter may also run them at once.
Every other action is information for the adapter (tell an agent, start an agent...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Union

from coagent_cli.core.keys import Key
from coagent_cli.errors import ProtocolError

Digest = str
"""A content digest of one key's value, as reported by the environment."""

ABSENT: Digest = "absent"
"""The digest of a key that does not exist (a file not created yet, or deleted)."""

NoticeKind = Literal["stale_read", "write_reordered", "write_dropped"]


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One tool invocation by one agent, as declared before it runs.

    reads/writes: the declared footprint (may be covering keys such as `dir:` or `*`).
    observes: keys whose value the agent itself sees in the result (a `cat` shows the
        file; an `append` tool reads the file but shows the agent nothing). Defaults to
        `reads`. Only observed keys make an agent stale.
    overwrites: written keys whose new value does not depend on the old one (a whole
        file written with given bytes). Their redo is a restore of the after-image, and
        MTPO may slip an earlier write underneath them without undoing them.
    reversible: False for ops with no inverse (network calls); such ops are held
        until every earlier-ranked agent has finished.
    servable: a pure read the environment can serve from stored versions (by digest)
        instead of undoing later writes for its duration.
    """

    op_id: int
    agent: str
    reads: frozenset[Key] = frozenset()
    writes: frozenset[Key] = frozenset()
    observes: frozenset[Key] | None = None
    overwrites: frozenset[Key] = frozenset()
    reversible: bool = True
    servable: bool = False
    label: str = ""

    def __post_init__(self) -> None:
        if self.observes is None:
            object.__setattr__(self, "observes", self.reads)
        if not self.overwrites <= self.writes:
            raise ProtocolError(f"op {self.op_id}: overwrites must be a subset of writes")
        if self.servable and self.writes:
            raise ProtocolError(f"op {self.op_id}: a servable read cannot write")

    @property
    def seen(self) -> frozenset[Key]:
        return self.observes if self.observes is not None else self.reads


@dataclass(frozen=True, slots=True)
class Change:
    """What one op did to one concrete key: digest before and after."""

    before: Digest
    after: Digest


@dataclass(frozen=True, slots=True)
class Notice:
    """A one-way message to a later agent: something it relied on changed."""

    notice_id: int
    agent: str
    key: Key
    kind: NoticeKind
    by: str
    old: Digest | None
    new: Digest
    steps: tuple[int, ...] = ()
    detail: str = ""


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class AgentRegistered:
    agent: str
    rank: int


@dataclass(frozen=True, slots=True)
class OpRequested:
    op: OpSpec


@dataclass(frozen=True, slots=True)
class OpExecuted:
    """Completion of Execute or ServeRead: the concrete keys actually written."""

    op_id: int
    writes: Mapping[Key, Change] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OpUndone:
    op_id: int


@dataclass(frozen=True, slots=True)
class OpRedone:
    """Completion of Redo. ok=False: the re-apply failed and left the state as before it."""

    op_id: int
    ok: bool
    writes: Mapping[Key, Change] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AgentFinished:
    agent: str


@dataclass(frozen=True, slots=True)
class AgentResumed:
    agent: str


@dataclass(frozen=True, slots=True)
class NoticesTaken:
    agent: str
    notice_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RetractRequested:
    """Undo some of an agent's own ops for good (a repair, or `coagent undo`)."""

    request_id: int
    agent: str
    op_ids: tuple[int, ...]


Event = Union[
    AgentRegistered,
    OpRequested,
    OpExecuted,
    OpUndone,
    OpRedone,
    AgentFinished,
    AgentResumed,
    NoticesTaken,
    RetractRequested,
]


# ---------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class StartAgent:
    agent: str


@dataclass(frozen=True, slots=True)
class Execute:
    """Effect: run the op now. shadowed=True: compute its result but leave the live
    state alone (a later overwrite already hides it)."""

    op_id: int
    shadowed: bool = False


@dataclass(frozen=True, slots=True)
class ServeRead:
    """Effect: serve the read from the live state, except that each key in `sources`
    is served with the stored value of that digest (the order-filtered version)."""

    op_id: int
    sources: Mapping[Key, Digest] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Undo:
    op_id: int


@dataclass(frozen=True, slots=True)
class Redo:
    """Effect: re-apply the op. base_changed=False means nothing it touches changed
    since it was undone, so restoring its after-images is exact."""

    op_id: int
    base_changed: bool


@dataclass(frozen=True, slots=True)
class Completed:
    """The agent's op (or retract request) is done; the agent may go on."""

    op_id: int


@dataclass(frozen=True, slots=True)
class Wait:
    op_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Hold:
    """An irreversible op waits until every earlier-ranked agent has finished."""

    op_id: int


@dataclass(frozen=True, slots=True)
class Refuse:
    op_id: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Drop:
    """A re-apply failed: the op stays undone; its agent gets a write_dropped notice."""

    op_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Notify:
    notice: Notice


@dataclass(frozen=True, slots=True)
class ResumeAgent:
    agent: str


@dataclass(frozen=True, slots=True)
class AbortAgent:
    """The agent's trajectory is discarded (its writes are being undone)."""

    agent: str
    reason: str


@dataclass(frozen=True, slots=True)
class RestartAgent:
    """The agent's writes are undone; start it again from scratch."""

    agent: str


@dataclass(frozen=True, slots=True)
class AgentSettled:
    """The agent and every earlier one are finished for good; its ops are committed."""

    agent: str


@dataclass(frozen=True, slots=True)
class Quiescent:
    """Every agent finished, no notice undelivered, nothing in flight."""


Action = Union[
    StartAgent,
    Execute,
    ServeRead,
    Undo,
    Redo,
    Completed,
    Wait,
    Hold,
    Refuse,
    Drop,
    Notify,
    ResumeAgent,
    AbortAgent,
    RestartAgent,
    AgentSettled,
    Quiescent,
]

EFFECTS = (Execute, ServeRead, Undo, Redo)


def is_effect(action: Action) -> bool:
    return isinstance(action, EFFECTS)
