"""The machinery every controller shares: sequences of effects under latches.

A *sequence* is what one admitted request does to the live state, in order:

    undo   ops above it that must move (newest applied first)
    materialise shadowed writes whose overwrite was just undone
    execute (or serve) the request's own op
    redo   the moved ops in chain order, on the new base

Its keys are latched while it runs (shared for reads, exclusive for writes), all at
once on admission, so sequences never deadlock; latches never span an agent's
thinking. Controllers differ only in what they admit, when, and with which undo set:
they override `_admit`, `_on_finished` and `_ready_to_settle`.

The parts live beside this module: `state` (what is kept), `sequences` (planning a
sequence), `effects` (its progress), `notices`, `removals` (retract, abort, restart)
and `settling` (retrying, settling, quiescence).
"""

from __future__ import annotations

from typing import Callable, ClassVar, Iterable

from coagent_cli.core.effects import (
    next_effect,
    record_dropped,
    record_executed,
    record_redone,
    record_undone,
)
from coagent_cli.core.ledger import Ledger, OpRecord
from coagent_cli.core.model import (
    Action,
    AgentFinished,
    AgentRegistered,
    AgentResumed,
    Completed,
    Drop,
    Event,
    Hold,
    NoticesTaken,
    OpExecuted,
    OpRedone,
    OpRequested,
    OpUndone,
    Refuse,
    ResumeAgent,
    RetractRequested,
    StartAgent,
    Wait,
)
from coagent_cli.core.notices import notify
from coagent_cli.core.removals import Removals
from coagent_cli.core.sequences import latch_clash, plan_plain, plan_removal
from coagent_cli.core.settling import Settling
from coagent_cli.core.state import AgentState, AgentStatus, Reserved, Retry, Sequence, Stats, Waiting
from coagent_cli.errors import ProtocolError

__all__ = ["AgentState", "AgentStatus", "Engine", "Sequence", "Stats"]


class Engine(Removals, Settling):
    """Base of every controller. Subclasses set `name` and the policy hooks."""

    name: ClassVar[str] = "engine"
    notifies: ClassVar[bool] = False  # MTPO tells later agents; baselines do not
    latching: ClassVar[bool] = True  # `none` runs everything at once
    holds_irreversible: ClassVar[bool] = True  # `none` does not

    def __init__(self, *, collect_versions: bool = True) -> None:
        self.collect_versions = collect_versions  # off only to measure what it saves
        self.ledger = Ledger()
        self.agents: dict[str, AgentState] = {}
        self.stats = Stats()
        self._sequences: dict[int, Sequence] = {}
        self._by_op: dict[int, Sequence] = {}
        self._waiting: Waiting = {}
        # Keys wanted by ops waiting for latches, by rank: a later-ranked op may not
        # overtake them on those keys (else a restarted agent can starve an earlier one).
        self._reserved: Reserved = {}
        self._sid = 0
        self._notice_id = 0
        self._was_quiescent = False
        self._side: list[Action] = []
        self._kick = False
        self._retrying = False
        self._again = False

    # ------------------------------------------------------------------ entry point

    def handle(self, event: Event) -> list[Action]:
        """Feed one event; get the actions it causes. Illegal events raise
        ProtocolError and leave the state unchanged."""
        handler = self._handlers().get(type(event))
        if handler is None:
            raise ProtocolError(f"unknown event {type(event).__name__}")
        self._side, self._kick = [], False
        actions = handler(self, event)
        actions = self._side + actions
        while self._kick:  # an abort was queued while deciding: start it now if it can
            self._side, self._kick = [], False
            actions += self._retry_waiting()
            actions += self._side
        actions.extend(self._check_quiescence())
        return actions

    def _emit(self, actions: list[Action]) -> None:
        """Actions decided while an op itself goes on waiting (a wound, say)."""
        self._side.extend(actions)

    @classmethod
    def _handlers(cls) -> dict[type, Callable[["Engine", Event], list[Action]]]:
        return {
            AgentRegistered: cls._on_registered,
            OpRequested: cls._on_requested,
            OpExecuted: cls._on_executed,
            OpUndone: cls._on_undone,
            OpRedone: cls._on_redone,
            AgentFinished: cls._on_agent_finished,
            AgentResumed: cls._on_resumed,
            NoticesTaken: cls._on_taken,
            RetractRequested: cls._on_retract,
        }  # type: ignore[dict-item]

    @property
    def quiescent(self) -> bool:
        return (
            bool(self.agents)
            and all(a.status in ("finished", "settled") and not a.inbox for a in self.agents.values())
            and not self._sequences
            and not self._waiting
        )

    # ---------------------------------------------------------------------- agents

    def _on_registered(self, ev: AgentRegistered) -> list[Action]:
        if ev.agent in self.agents:
            raise ProtocolError(f"agent {ev.agent!r} is already registered")
        if self.agents and ev.rank <= max(a.rank for a in self.agents.values()):
            raise ProtocolError("agents must be registered in increasing rank order")
        self.agents[ev.agent] = AgentState(ev.agent, ev.rank)
        self.ledger.ranks[ev.agent] = ev.rank
        return self._start_agents()

    def _start_agents(self) -> list[Action]:
        out: list[Action] = []
        for a in self._by_rank():
            if a.status == "registered" and self._may_start(a):
                a.status = "running"
                out.append(StartAgent(a.name))
        return out

    def _may_start(self, agent: AgentState) -> bool:
        return True

    def _on_agent_finished(self, ev: AgentFinished) -> list[Action]:
        a = self._agent(ev.agent)
        if a.status != "running":
            raise ProtocolError(f"agent {a.name!r} is not running (it is {a.status})")
        if a.in_flight is not None:
            raise ProtocolError(f"agent {a.name!r} finished with op {a.in_flight} in flight")
        if a.inbox:  # it stopped with notices it has not taken: resume it with them
            self.stats.resumes += 1
            return [ResumeAgent(a.name)]
        a.status = "finished"
        return self._on_finished(a) + self._after_change()

    def _on_resumed(self, ev: AgentResumed) -> list[Action]:
        a = self._agent(ev.agent)
        if a.status == "settled":
            raise ProtocolError(f"agent {a.name!r} is settled and cannot resume")
        a.status = "running"
        return []

    def _on_taken(self, ev: NoticesTaken) -> list[Action]:
        a = self._agent(ev.agent)
        for nid in ev.notice_ids:
            a.inbox.pop(nid, None)
        return self._after_change()

    # ------------------------------------------------------------------------- ops

    def _on_requested(self, ev: OpRequested) -> list[Action]:
        spec = ev.op
        a = self._agent(spec.agent)
        if spec.op_id in self.ledger.ops or spec.op_id in self._waiting:
            raise ProtocolError(f"op id {spec.op_id} is already in use")
        if a.status != "running":
            raise ProtocolError(f"agent {a.name!r} cannot request ops while {a.status}")
        if a.in_flight is not None:
            raise ProtocolError(f"agent {a.name!r} already has op {a.in_flight} in flight")
        if a.aborting:
            return [Refuse(spec.op_id, "aborted", "the agent is being restarted")]
        rec = self.ledger.add_op(spec)
        a.in_flight = spec.op_id
        a.steps += 1
        return self._admit_or_wait(rec)

    def _admit_or_wait(self, rec: OpRecord) -> list[Action]:
        admit: Retry = lambda: self._admit(rec)  # noqa: E731
        if not rec.spec.reversible and self.holds_irreversible:
            # An op with no inverse can never be undone, so it runs only once every
            # earlier agent is finished for good.
            if not self._earlier_settled(rec.rank):
                self.stats.holds += 1
                self._wait(rec.op_id, rec.order, lambda: self._release(rec))
                return [Hold(rec.op_id)]
            admit = lambda: self._release(rec)  # noqa: E731
        actions = admit()
        if actions is not None:
            return actions
        self.stats.waits += 1
        self._reserved[rec.op_id] = (rec.rank, rec.spec.reads, rec.spec.writes)
        self._wait(rec.op_id, rec.order, admit)
        return [Wait(rec.op_id, "keys latched or locked by another agent")]

    def _release(self, rec: OpRecord) -> list[Action] | None:
        if not self._earlier_settled(rec.rank):
            return None
        turned_away = self._before_irreversible(rec)
        return turned_away if turned_away is not None else self._admit(rec)

    def _before_irreversible(self, rec: OpRecord) -> list[Action] | None:
        """Policy hook: last check before an op that can never be undone runs."""
        if self.agents[rec.agent].inbox:
            # Its plan may rest on stale reads: let it take its notices first.
            return self._refuse(rec, "notices_pending", "take your notices, then retry")
        return None

    def _wait(self, wid: int, order: tuple[int, int], retry: Retry) -> None:
        self._waiting[wid] = (order, retry)

    def _admit(self, rec: OpRecord) -> list[Action] | None:
        """Policy hook: start a sequence for the op, or return None to wait."""
        raise NotImplementedError

    def _refuse(self, rec: OpRecord, code: str, message: str) -> list[Action]:
        """Turn the op away; the agent may issue a new one."""
        del self.ledger.ops[rec.op_id]
        self._reserved.pop(rec.op_id, None)
        self._agent(rec.agent).in_flight = None
        self.stats.refusals += 1
        return [Refuse(rec.op_id, code, message)]

    # ------------------------------------------------------------------- sequences

    def _plain_sequence(self, rec: OpRecord, undo: Iterable[int] = ()) -> Sequence:
        return plan_plain(self.ledger, self._new_sequence(rec.agent, owner=rec.op_id), rec, undo)

    def _removal_sequence(self, actor: str, remove: set[int]) -> Sequence:
        """Undo `remove` for good, moving whatever sits above them and re-applying it."""
        return plan_removal(self.ledger, self._new_sequence(actor, owner=None), remove)

    def _new_sequence(self, actor: str, owner: int | None) -> Sequence:
        self._sid += 1
        return Sequence(sid=self._sid, actor=actor, owner=owner)

    def _latched(self, seq: Sequence) -> bool:
        if not self.latching:
            return False
        return latch_clash(seq, self._sequences.values(), self._reserved, self.agents[seq.actor].rank)

    def _start(self, seq: Sequence) -> list[Action] | None:
        """Start a sequence if its latches are free; None when it must wait."""
        if self._latched(seq):
            return None
        if seq.owner is not None:
            self._reserved.pop(seq.owner, None)
        self._sequences[seq.sid] = seq
        seq.freeze()
        for o in seq.members:
            self._by_op[o] = seq
        return self._advance(seq)

    def _advance(self, seq: Sequence) -> list[Action]:
        action = next_effect(self.ledger, seq)
        return [action] if action is not None else self._finish(seq)

    def _finish(self, seq: Sequence) -> list[Action]:
        del self._sequences[seq.sid]
        for o in seq.members:
            if self._by_op.get(o) is seq:
                del self._by_op[o]
        out: list[Action] = []
        if seq.owner is not None and seq.execute is None:
            out.append(Completed(seq.owner))
        if self.notifies:
            out.extend(notify(self.ledger, self.agents, self.stats, seq, self._next_notice_id))
        out.extend(self._restart(seq.restart))
        return out + self._after_change()

    def _next_notice_id(self) -> int:
        self._notice_id += 1
        return self._notice_id

    # ------------------------------------------------------------ effect reports

    def _expect(self, op_id: int) -> tuple[Sequence, OpRecord]:
        seq = self._by_op.get(op_id)
        if seq is None or seq.current != op_id:
            raise ProtocolError(f"no effect on op {op_id} is outstanding")
        seq.current = None
        return seq, self.ledger.ops[op_id]

    def _on_executed(self, ev: OpExecuted) -> list[Action]:
        seq, rec = self._expect(ev.op_id)
        if seq.execute != ev.op_id or seq.executed:
            seq.current = ev.op_id
            raise ProtocolError(f"op {ev.op_id} was not being executed")
        seq.executed = True
        record_executed(self.ledger, self.stats, seq, rec, dict(ev.writes))
        self._agent(rec.agent).in_flight = None
        return [Completed(rec.op_id)] + self._advance(seq)

    def _on_undone(self, ev: OpUndone) -> list[Action]:
        seq, rec = self._expect(ev.op_id)
        record_undone(self.ledger, self.stats, seq, rec)
        return self._advance(seq)

    def _on_redone(self, ev: OpRedone) -> list[Action]:
        seq, rec = self._expect(ev.op_id)
        if ev.ok:
            record_redone(self.ledger, self.stats, seq, rec, dict(ev.writes))
            return self._advance(seq)
        record_dropped(self.ledger, self.stats, seq, rec)
        return [Drop(rec.op_id, ev.reason or "re-apply failed")] + self._advance(seq)

    # ---------------------------------------------------------------------- misc

    def _agent(self, name: str) -> AgentState:
        a = self.agents.get(name)
        if a is None:
            raise ProtocolError(f"unknown agent {name!r}")
        return a

    def _by_rank(self) -> list[AgentState]:
        return sorted(self.agents.values(), key=lambda a: a.rank)

    def snapshot(self) -> dict[str, object]:
        return {
            "controller": self.name,
            "agents": {a.name: {"rank": a.rank, "status": a.status, "inbox": len(a.inbox), "steps": a.steps}
                       for a in self._by_rank()},
            "stats": vars(self.stats).copy(),
            "versions": self.ledger.version_count(),
            "in_flight": len(self._sequences),
            "waiting": len(self._waiting),
        }
