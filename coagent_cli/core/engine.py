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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable, Literal

from coagent_cli.core.keys import Key, any_conflict
from coagent_cli.core.ledger import Ledger, OpRecord
from coagent_cli.core.model import (
    AbortAgent,
    Action,
    AgentFinished,
    AgentRegistered,
    AgentResumed,
    AgentSettled,
    Change,
    Completed,
    Drop,
    Event,
    Execute,
    Hold,
    Notice,
    NoticeKind,
    NoticesTaken,
    Notify,
    OpExecuted,
    OpRedone,
    OpRequested,
    OpUndone,
    Quiescent,
    Redo,
    Refuse,
    RestartAgent,
    ResumeAgent,
    RetractRequested,
    ServeRead,
    StartAgent,
    Undo,
    Wait,
)
from coagent_cli.errors import ProtocolError

AgentStatus = Literal["registered", "running", "finished", "settled"]


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


class Engine:
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
        self._waiting: dict[int, tuple[tuple[int, int], Callable[[], list[Action] | None]]] = {}
        # Keys wanted by ops waiting for latches, by rank: a later-ranked op may not
        # overtake them on those keys (else a restarted agent can starve an earlier one).
        self._reserved: dict[int, tuple[int, frozenset[Key], frozenset[Key]]] = {}
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
        admit: Callable[[], list[Action] | None] = lambda: self._admit(rec)  # noqa: E731
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

    def _wait(self, wid: int, order: tuple[int, int], retry: Callable[[], list[Action] | None]) -> None:
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

    def _plain_sequence(self, rec: OpRecord, undo: Iterable[int] = ()) -> Sequence:
        spec = rec.spec
        seq = self._new_sequence(rec.agent, owner=rec.op_id)
        seq.execute = rec.op_id
        seq.serve = spec.servable
        undone = self.ledger.closure(undo)
        seq.undo = sorted(undone, key=lambda o: -self.ledger.ops[o].applied_at)
        seq.materialise = self.ledger.shadowed_beneath(undone)
        seq.redo = sorted(undone, key=lambda o: self.ledger.ops[o].order)
        ops = [self.ledger.ops[o] for o in undone]
        seq.latch_r = spec.reads | frozenset(k for o in ops for k in o.spec.reads)
        seq.latch_w = spec.writes | frozenset(k for o in ops for k in o.written)
        return seq

    def _new_sequence(self, actor: str, owner: int | None) -> Sequence:
        self._sid += 1
        return Sequence(sid=self._sid, actor=actor, owner=owner)

    def _latched(self, seq: Sequence) -> bool:
        if not self.latching:
            return False
        held = [(o.latch_r, o.latch_w) for o in self._sequences.values()]
        rank = self.agents[seq.actor].rank
        if seq.execute is not None:  # undo-only sequences free keys: never hold them back
            held += [(r, w) for op, (r_rank, r, w) in self._reserved.items()
                     if r_rank < rank and op != seq.owner]
        return any(any_conflict(seq.latch_w, r | w) or any_conflict(seq.latch_r, w) for r, w in held)

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

    # -------------------------------------------------------------- effect progress

    def _advance(self, seq: Sequence) -> list[Action]:
        ops = self.ledger.ops
        while seq.undo:
            o = seq.undo.pop(0)
            if ops[o].applied:
                seq.current = o
                return [Undo(o)]
            ops[o].state = "undone"
            seq.bases[o] = self._base_under(ops[o])
            self._finish_undo(seq, ops[o])
        if seq.materialise:
            o = seq.materialise.pop(0)
            seq.current = o
            return [Redo(o, base_changed=True)]
        if seq.execute is not None and not seq.executed:
            seq.current = seq.execute
            rec = ops[seq.execute]
            rec.state = "running"
            if seq.serve:
                return [ServeRead(rec.op_id, self._sources(rec))]
            return [Execute(rec.op_id, shadowed=seq.shadowed)]
        while seq.redo:
            o = seq.redo.pop(0)
            if o in seq.remove or ops[o].state == "dropped":
                continue
            seq.current = o
            base_changed = seq.bases.get(o) != self._base_under(ops[o])
            return [Redo(o, base_changed=base_changed)]
        return self._finish(seq)

    def _base_under(self, rec: OpRecord) -> dict[Key, str | None]:
        """The live values of everything the op reads or writes (it being undone)."""
        return {k: self.ledger.physical(k) for k in self.ledger.keys_touching(rec.spec.reads | rec.written)}

    def _sources(self, rec: OpRecord) -> dict[Key, str]:
        out: dict[Key, str] = {}
        for k in self.ledger.keys_touching(rec.spec.reads):
            want = self.ledger.visible(rec.agent, k, rec.seq)
            if want is not None and want != self.ledger.physical(k):
                out[k] = want
        return out

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
        writes = dict(ev.writes)
        # A tool that was to write but changed nothing (it failed, or found nothing to
        # change) told the agent something about what it read: that is an observation.
        self.ledger.observe(rec, also=rec.spec.reads if rec.spec.writes and not writes else ())
        if writes:
            self.ledger.insert(rec, writes)
            rec.state = "live"
            rec.applied = not seq.shadowed
            rec.applied_at = self.ledger.tick()
            seq.touched.update(writes)
        else:
            rec.state = "done"
        if seq.serve:
            self.stats.served += 1
        else:
            self.stats.executed += 1
        self.stats.shadowed += int(seq.shadowed)
        self.stats.peak_versions = max(self.stats.peak_versions, self.ledger.peak_versions)
        self._agent(rec.agent).in_flight = None
        return [Completed(rec.op_id)] + self._advance(seq)

    def _on_undone(self, ev: OpUndone) -> list[Action]:
        seq, rec = self._expect(ev.op_id)
        rec.applied = False
        rec.state = "undone"
        self.stats.undos += 1
        seq.bases[rec.op_id] = self._base_under(rec)
        self._finish_undo(seq, rec)
        return self._advance(seq)

    def _finish_undo(self, seq: Sequence, rec: OpRecord) -> None:
        if rec.op_id in seq.remove:
            rec.state = "retracted"
            seq.touched.update(rec.writes)
            self.ledger.remove(rec)

    def _on_redone(self, ev: OpRedone) -> list[Action]:
        seq, rec = self._expect(ev.op_id)
        if ev.ok:
            return self._redo_ok(seq, rec, dict(ev.writes))
        rec.state = "dropped"
        self.stats.drops += 1
        seq.dropped.add(rec.op_id)
        seq.touched.update(rec.writes)
        self.ledger.remove(rec)
        return [Drop(rec.op_id, ev.reason or "re-apply failed")] + self._advance(seq)

    def _redo_ok(self, seq: Sequence, rec: OpRecord, writes: dict[Key, Change]) -> list[Action]:
        old = {k: c.after for k, c in rec.writes.items()}
        new = {k: c.after for k, c in writes.items()}
        self.ledger.update_writes(rec, writes)
        rec.applied = True
        rec.state = "live"
        rec.applied_at = self.ledger.tick()
        self.stats.redos += 1
        if old != new:
            changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
            seq.touched.update(changed)
            seq.reordered.setdefault(rec.op_id, old)
        return self._advance(seq)

    def _finish(self, seq: Sequence) -> list[Action]:
        del self._sequences[seq.sid]
        for o in seq.members:
            if self._by_op.get(o) is seq:
                del self._by_op[o]
        out: list[Action] = []
        if seq.owner is not None and seq.execute is None:
            out.append(Completed(seq.owner))
        if self.notifies:
            out.extend(self._notify(seq))
        out.extend(self._restart(seq.restart))
        return out + self._after_change()

    # -------------------------------------------------------------------- retract

    def _on_retract(self, ev: RetractRequested) -> list[Action]:
        a = self._agent(ev.agent)
        if a.in_flight is not None:
            raise ProtocolError(f"agent {a.name!r} cannot retract with op {a.in_flight} in flight")
        for o in ev.op_ids:
            rec = self.ledger.ops.get(o)
            if rec is None or rec.agent != ev.agent:
                raise ProtocolError(f"op {o} is not a live op of agent {ev.agent!r}")
        a.in_flight = ev.request_id
        retry = lambda: self._retract(ev)  # noqa: E731
        actions = retry()
        if actions is not None:
            return actions
        self._wait(ev.request_id, (a.rank, 0), retry)
        return [Wait(ev.request_id, "keys latched by another agent")]

    def _retract(self, ev: RetractRequested) -> list[Action] | None:
        recs = [self.ledger.ops[o] for o in ev.op_ids]
        seq = self._removal_sequence(ev.agent, {r.op_id for r in recs if r.writes})
        seq.owner = ev.request_id
        started = self._start(seq)
        if started is None:
            return None
        first = min((r.seq for r in recs), default=None)
        for r in recs:
            if not r.writes:
                r.state = "retracted"
        if first is not None:
            self.ledger.forget_from(ev.agent, first)
        self._agent(ev.agent).in_flight = None
        return started

    def _removal_sequence(self, actor: str, remove: set[int]) -> Sequence:
        """Undo `remove` for good, moving whatever sits above them and re-applying it."""
        undone = self.ledger.closure(remove)
        ops = [self.ledger.ops[o] for o in undone]
        seq = self._new_sequence(actor, owner=None)
        seq.undo = sorted(undone, key=lambda o: -self.ledger.ops[o].applied_at)
        seq.materialise = self.ledger.shadowed_beneath(undone)
        seq.redo = sorted(undone - remove, key=lambda o: self.ledger.ops[o].order)
        seq.remove = set(remove)
        seq.latch_r = frozenset(k for o in ops for k in o.spec.reads)
        seq.latch_w = frozenset(k for o in ops for k in o.written)
        return seq

    # ------------------------------------------------------------- abort / restart

    def _abort(self, agents: set[str], reason: str) -> list[Action]:
        """Discard these agents' trajectories (and of any agent whose writes sit on
        top of theirs): undo their writes, then restart them from scratch."""
        out: list[Action] = []
        for name in sorted(agents, key=lambda n: self.agents[n].rank):
            a = self.agents[name]
            if not a.aborting:
                a.aborting = True
                self.stats.aborts += 1
                out.append(AbortAgent(name, reason))
                out.extend(self._cancel_queued(a))
        self._sid += 1  # waits of aborts get negative ids: never an adapter's op id
        self._wait(-self._sid, (-1, 0), lambda: self._try_abort(set(agents)))
        self._kick = True
        return out

    def _cancel_queued(self, a: AgentState) -> list[Action]:
        """An aborted agent's op that has not started yet is turned away."""
        op = a.in_flight
        if op is None or op not in self._waiting or op in self._by_op:
            return []
        del self._waiting[op]
        self._reserved.pop(op, None)
        if op in self.ledger.ops:
            return self._refuse(self.ledger.ops[op], "aborted", "the agent is being restarted")
        a.in_flight = None
        return []

    def _try_abort(self, agents: set[str]) -> list[Action] | None:
        if any(self.agents[n].in_flight is not None for n in agents):
            return None  # let their running op land first; it is undone with the rest
        while True:
            ops = {o for o, r in self.ledger.ops.items() if r.agent in agents and r.writes and r.state == "live"}
            above = {self.ledger.ops[o].agent for o in self.ledger.closure(ops)} - agents
            if not above:
                break
            for name in sorted(above, key=lambda n: self.agents[n].rank):  # replayable order
                if not self.agents[name].aborting:
                    self.agents[name].aborting = True
                    self.stats.aborts += 1
                    self._emit([AbortAgent(name, "its writes sit on an aborted agent's writes")])
                    self._emit(self._cancel_queued(self.agents[name]))
            agents |= above
            if any(self.agents[n].in_flight is not None for n in agents):
                return None
        seq = self._removal_sequence(min(agents, key=lambda n: self.agents[n].rank), ops)
        seq.restart = set(agents)
        return self._start(seq)

    def _restart(self, agents: Iterable[str]) -> list[Action]:
        out: list[Action] = []
        for name in sorted(agents, key=lambda n: self.agents[n].rank):
            a = self.agents[name]
            for o, r in list(self.ledger.ops.items()):
                if r.agent == name and r.state in ("done", "retracted", "dropped"):
                    del self.ledger.ops[o]
            self.ledger.forget_from(name, 0)
            a.aborting = False
            a.status = "running"
            a.inbox.clear()
            self.stats.restarts += 1
            self._on_restarted(a)
            out.append(RestartAgent(name))
        return out

    def _on_restarted(self, agent: AgentState) -> None:
        """Policy hook (2PL releases the agent's locks here)."""

    # ------------------------------------------------------------------- notices

    def _notify(self, seq: Sequence) -> list[Action]:
        found: dict[tuple[str, Key], tuple[NoticeKind, str | None, str, tuple[int, ...]]] = {}
        for k in seq.touched:
            for agent in self._observers(k):
                stale = self.ledger.stale(agent, k) if agent != seq.actor else []
                if stale:
                    old = stale[0][0].digest
                    for o, now in stale:
                        o.digest = now  # the notice tells the agent the new value
                    steps = tuple(op for o, _ in stale for op in o.op_ids)
                    found[(agent, k)] = ("stale_read", old, stale[-1][1], steps)
        for op, before in seq.reordered.items():
            rec = self.ledger.ops[op]
            for k, had in before.items():
                now = rec.writes.get(k)
                if rec.agent != seq.actor and (now is None or now.after != had):
                    _merge(found, (rec.agent, k), ("write_reordered", had, now.after if now else "", (op,)))
        for op in seq.dropped:
            rec = self.ledger.ops[op]
            for k, c in rec.writes.items():
                if rec.agent != seq.actor:
                    new = self.ledger.visible(rec.agent, k) or ""
                    _merge(found, (rec.agent, k), ("write_dropped", c.after, new, (op,)))
        return self._deliver(found, seq.actor)

    def _observers(self, key: Key) -> list[str]:
        return [a for a, known in self.ledger.obs.items() if key in known]

    def _deliver(self, found: dict, by: str) -> list[Action]:
        out: list[Action] = []
        for (agent, key), (kind, old, new, steps) in sorted(found.items(), key=lambda x: (self.agents[x[0][0]].rank, str(x[0][1]))):
            self._notice_id += 1
            notice = Notice(self._notice_id, agent, key, kind, by, old, new, tuple(steps), _detail(kind, key, by))
            a = self.agents[agent]
            a.inbox[notice.notice_id] = notice
            self.stats.notices += 1
            out.append(Notify(notice))
            if a.status == "finished":
                a.status = "running"
                self.stats.resumes += 1
                out.append(ResumeAgent(agent))
        return out

    # --------------------------------------------------------- settle and collect

    def _after_change(self) -> list[Action]:
        out = self._retry_waiting()
        out.extend(self._settle())
        out.extend(self._start_agents())
        if out:
            out.extend(self._retry_waiting())
        return out

    def _retry_waiting(self) -> list[Action]:
        """Retry queued requests in (rank, seq) order until none can move. Re-entrant
        calls (a retry that finishes a sequence) only ask the outer loop to go again."""
        if self._retrying:
            self._again = True
            return []
        self._retrying, out = True, []
        try:
            self._again = True
            while self._again:
                self._again = False
                for wid, (order, retry) in sorted(self._waiting.items(), key=lambda x: x[1][0]):
                    if wid not in self._waiting:
                        continue
                    del self._waiting[wid]
                    actions = retry()
                    if actions is None:
                        self._waiting[wid] = (order, retry)
                    else:
                        out.extend(actions)
                        self._again = True
        finally:
            self._retrying = False
        return out

    def _settle(self) -> list[Action]:
        out: list[Action] = []
        for a in self._by_rank():
            if a.status == "settled":
                continue
            if not self._ready_to_settle(a):
                break
            verdict = self._commit(a)
            if verdict is not None:
                out.extend(verdict)
                break
            a.status = "settled"
            if self.collect_versions:
                self.stats.collected += self.ledger.collect(a.rank)
            out.append(AgentSettled(a.name))
        return out

    def _ready_to_settle(self, a: AgentState) -> bool:
        if a.status != "finished" or a.inbox or a.in_flight is not None or a.aborting:
            return False
        return not any(
            self.ledger.ops[o].rank <= a.rank for s in self._sequences.values() for o in s.members
            if o in self.ledger.ops
        )

    def _commit(self, a: AgentState) -> list[Action] | None:
        """Policy hook: None to settle the agent, or actions (e.g. an abort) instead."""
        return None

    def _earlier_settled(self, rank: int) -> bool:
        return all(a.status == "settled" for a in self.agents.values() if a.rank < rank)

    def _check_quiescence(self) -> list[Action]:
        q = self.quiescent
        fire = q and not self._was_quiescent
        self._was_quiescent = q
        return [Quiescent()] if fire else []

    def _on_finished(self, a: AgentState) -> list[Action]:
        return []

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
            "agents": {a.name: {"rank": a.rank, "status": a.status, "inbox": len(a.inbox), "steps": a.steps} for a in self._by_rank()},
            "stats": vars(self.stats).copy(),
            "versions": self.ledger.version_count(),
            "in_flight": len(self._sequences),
            "waiting": len(self._waiting),
        }


_SEVERITY = {"write_reordered": 0, "stale_read": 1, "write_dropped": 2}


def _merge(found: dict, where: tuple, notice: tuple) -> None:
    """One notice per agent and key: the most severe kind, every step that relied on it."""
    prev = found.get(where)
    if prev is None:
        found[where] = notice
        return
    keep = notice if _SEVERITY[notice[0]] > _SEVERITY[prev[0]] else prev
    found[where] = (keep[0], keep[1], keep[2], tuple(dict.fromkeys(prev[3] + notice[3])))


def _detail(kind: NoticeKind, key: Key, by: str) -> str:
    if kind == "stale_read":
        return f"{by} (earlier) changed {key} after you read it; re-check the steps that used it"
    if kind == "write_reordered":
        return f"your write to {key} was re-applied on top of {by}'s earlier change"
    return f"your write to {key} could not be re-applied on top of {by}'s earlier change and was dropped"
