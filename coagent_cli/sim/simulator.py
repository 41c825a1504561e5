"""A discrete-event simulator with a virtual clock: agents as programs, one controller.

It drives a controller exactly as the daemon does (events in, actions out, effects
performed and answered), on the in-memory environment, with random think times and
random tie-breaks between simultaneous events, so one seed is one interleaving. It
reports makespan, the final state checked against the serial run, work spent
(restarted and repaired steps included, as a proxy for tokens), and the protocol's
counters.

Scripted agents repair like a careful model would: on a stale read they retract their
own ops from the first step that used the stale key and replay from there.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from coagent_cli.core import make_controller
from coagent_cli.core.engine import Engine
from coagent_cli.core.model import (
    AbortAgent,
    Action,
    AgentFinished,
    AgentRegistered,
    Completed,
    Event,
    Execute,
    Notice,
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
)
from coagent_cli.errors import ProtocolError
from coagent_cli.sim.env import MemoryEnv, PendingOp
from coagent_cli.sim.program import Program, Think, spec_for


@dataclass
class SimAgent:
    name: str
    program: Program
    pc: int = 0
    memory: dict[str, object] = field(default_factory=dict)
    snapshots: dict[int, dict[str, object]] = field(default_factory=dict)
    trajectory: list[tuple[int, int]] = field(default_factory=list)  # (step index, op id)
    inbox: list[Notice] = field(default_factory=list)
    waiting_on: int | None = None
    epoch: int = 0
    finished: bool = False
    aborted: bool = False
    work: int = 0
    think: int = 0
    repairs: int = 0
    restarts: int = 0


@dataclass
class SimReport:
    controller: str
    makespan: int
    final: dict[str, str]
    published: list[tuple[object, ...]]
    expected: dict[str, str]
    expected_published: list[tuple[object, ...]]
    work: int
    think: int
    stats: dict[str, int]
    agents: dict[str, dict[str, int]]

    @property
    def correct(self) -> bool:
        return self.final == self.expected and self.published == self.expected_published


class Simulator:
    def __init__(self, controller: str | Engine, programs: Mapping[str, Program],
                 initial: Mapping[str, str] | None = None, *, seed: int = 0,
                 max_events: int = 200_000, trace: bool = False) -> None:
        self.trace: list[str] | None = [] if trace else None
        self.core = make_controller(controller) if isinstance(controller, str) else controller
        self.env = MemoryEnv(initial)
        self.initial = dict(initial or {})
        self.programs = dict(programs)
        self.agents = {n: SimAgent(n, p) for n, p in programs.items()}
        self.rng = random.Random(seed)
        self.now = 0
        self.max_events = max_events
        self._queue: list[tuple[int, float, int, Callable[[], None]]] = []
        self._counter = 0
        self._next_id = 0
        self._quiescent_at: int | None = None

    # ------------------------------------------------------------------ running

    def run(self) -> SimReport:
        for rank, name in enumerate(self.agents):
            self._feed(AgentRegistered(name, rank))
        events = 0
        while self._queue:
            events += 1
            if events > self.max_events:
                raise ProtocolError(f"simulation did not settle within {self.max_events} events")
            t, _, _, fn = heapq.heappop(self._queue)
            self.now = t
            fn()
        if not self.core.quiescent:
            raise ProtocolError(f"simulation stalled before quiescence: {self.core.snapshot()}")
        return self._report()

    def _at(self, delay: int, fn: Callable[[], None]) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (self.now + delay, self.rng.random(), self._counter, fn))

    def _feed(self, event: Event) -> None:
        actions = self.core.handle(event)
        if self.trace is not None:
            self.trace.append(f"{self.now:>5} > {event}")
            self.trace.extend(f"{self.now:>5} <   {a}" for a in actions)
        for action in actions:
            self._act(action)

    # ------------------------------------------------------------------ actions

    def _act(self, a: Action) -> None:
        handler = _ACTIONS.get(type(a))
        if handler is not None:
            handler(self, a)

    def _start(self, a: StartAgent) -> None:
        self._schedule_step(self.agents[a.agent], 0)

    def _execute(self, a: Execute) -> None:
        writes = self.env.execute(a.op_id, shadowed=a.shadowed)
        cost = getattr(self.env.ops[a.op_id].step, "cost", 1)
        self._at(cost, lambda: self._feed(OpExecuted(a.op_id, writes)))

    def _serve(self, a: ServeRead) -> None:
        self.env.serve(a.op_id, a.sources)
        cost = getattr(self.env.ops[a.op_id].step, "cost", 1)
        self._at(cost, lambda: self._feed(OpExecuted(a.op_id, {})))

    def _undo(self, a: Undo) -> None:
        self.env.undo(a.op_id)
        self._at(0, lambda: self._feed(OpUndone(a.op_id)))

    def _redo(self, a: Redo) -> None:
        ok, writes, reason = self.env.redo(a.op_id, base_changed=a.base_changed)
        self._at(0, lambda: self._feed(OpRedone(a.op_id, ok, writes, reason)))

    def _completed(self, a: Completed) -> None:
        agent = self._owner(a.op_id)
        if agent is None or agent.aborted:
            return
        agent.waiting_on = None
        result = self.env.results.get(a.op_id)
        if result is not None:
            agent.memory.update(result.seen)
        self._schedule_step(agent, 0)

    def _refuse(self, a: Refuse) -> None:
        agent = self._owner(a.op_id)
        if agent is None:
            return
        agent.waiting_on = None
        agent.trajectory = [(i, o) for i, o in agent.trajectory if o != a.op_id]
        if a.code != "aborted":
            agent.pc -= 1  # retry the same step after taking notices
            self._schedule_step(agent, 1)

    def _notify(self, a: Notify) -> None:
        self.agents[a.notice.agent].inbox.append(a.notice)

    def _resume(self, a: ResumeAgent) -> None:
        agent = self.agents[a.agent]
        agent.finished = False
        self._schedule_step(agent, 0)

    def _abort(self, a: AbortAgent) -> None:
        self.agents[a.agent].aborted = True

    def _restart(self, a: RestartAgent) -> None:
        agent = self.agents[a.agent]
        agent.epoch += 1
        agent.pc, agent.memory, agent.snapshots = 0, {}, {}
        agent.trajectory, agent.inbox, agent.waiting_on = [], [], None
        agent.aborted = agent.finished = False
        agent.restarts += 1
        self._schedule_step(agent, 0)

    def _quiescent(self, a: Quiescent) -> None:
        self._quiescent_at = self.now

    # ---------------------------------------------------------------- the agents

    def _owner(self, op_id: int) -> SimAgent | None:
        for agent in self.agents.values():
            if agent.waiting_on == op_id:
                return agent
        return None

    def _schedule_step(self, agent: SimAgent, delay: int) -> None:
        epoch = agent.epoch
        self._at(delay, lambda: self._step(agent) if agent.epoch == epoch else None)

    def _step(self, agent: SimAgent) -> None:
        if agent.waiting_on is not None or agent.aborted:
            return
        if agent.inbox and self._take_notices(agent):
            return
        if agent.pc >= len(agent.program):
            if not agent.finished:
                agent.finished = True
                self._feed(AgentFinished(agent.name))
            return
        agent.finished = False
        index, step = agent.pc, agent.program[agent.pc]
        agent.snapshots[index] = dict(agent.memory)
        agent.pc += 1
        agent.work += 1
        if isinstance(step, Think):
            agent.think += step.duration
            self._schedule_step(agent, step.duration)
            return
        self._next_id += 1
        op_id = self._next_id
        self.env.ops[op_id] = PendingOp(step, agent.name, index, dict(agent.memory))
        agent.trajectory.append((index, op_id))
        agent.waiting_on = op_id
        self._feed(OpRequested(spec_for(step, op_id, agent.name)))

    def _take_notices(self, agent: SimAgent) -> bool:
        """Re-judge: replay from the first step that relied on what changed.
        Returns True when a repair is under way (the agent waits for it)."""
        notices, agent.inbox = agent.inbox, []
        self._feed(NoticesTaken(agent.name, tuple(n.notice_id for n in notices)))
        step_of = {o: i for i, o in agent.trajectory}
        hit = [step_of[o] for n in notices if n.kind != "write_reordered" for o in n.steps if o in step_of]
        if not hit:
            return False
        start = min(hit)
        agent.repairs += 1
        undo = tuple(o for i, o in agent.trajectory if i >= start)
        agent.trajectory = [(i, o) for i, o in agent.trajectory if i < start]
        agent.pc, agent.memory = start, dict(agent.snapshots[start])
        self._next_id += 1
        agent.waiting_on = self._next_id
        self._feed(RetractRequested(self._next_id, agent.name, undo))
        return True

    # ---------------------------------------------------------------- the report

    def _report(self) -> SimReport:
        expected, expected_pub = serial_oracle(self.programs, self.initial)
        return SimReport(
            controller=self.core.name,
            makespan=self._quiescent_at if self._quiescent_at is not None else self.now,
            final=self.env.snapshot(),
            published=list(self.env.published),
            expected=expected,
            expected_published=expected_pub,
            work=sum(a.work for a in self.agents.values()),
            think=sum(a.think for a in self.agents.values()),
            stats=dict(vars(self.core.stats)),
            agents={a.name: {"work": a.work, "think": a.think, "repairs": a.repairs, "restarts": a.restarts}
                    for a in self.agents.values()},
        )


_ACTIONS: dict[type, Callable[[Simulator, object], None]] = {
    StartAgent: Simulator._start,
    Execute: Simulator._execute,
    ServeRead: Simulator._serve,
    Undo: Simulator._undo,
    Redo: Simulator._redo,
    Completed: Simulator._completed,
    Refuse: Simulator._refuse,
    Notify: Simulator._notify,
    ResumeAgent: Simulator._resume,
    AbortAgent: Simulator._abort,
    RestartAgent: Simulator._restart,
    Quiescent: Simulator._quiescent,
}  # type: ignore[dict-item]


def serial_oracle(programs: Mapping[str, Program], initial: Mapping[str, str] | None = None
                  ) -> tuple[dict[str, str], list[tuple[object, ...]]]:
    """Run the programs one after another in rank order, with no controller at all."""
    env = MemoryEnv(initial)
    next_id = 0
    for name, program in programs.items():
        memory: dict[str, object] = {}
        for index, step in enumerate(program):
            if isinstance(step, Think):
                continue
            next_id += 1
            env.ops[next_id] = PendingOp(step, name, index, dict(memory))
            env.execute(next_id)
            memory.update(env.results[next_id].seen)
    return env.snapshot(), list(env.published)


def simulate(controller: str, programs: Mapping[str, Program], initial: Mapping[str, str] | None = None,
             *, seed: int = 0) -> SimReport:
    return Simulator(controller, programs, initial, seed=seed).run()


def compare(programs: Mapping[str, Program], initial: Mapping[str, str] | None = None, *,
            controllers: Sequence[str] = ("serial", "mtpo", "2pl", "occ", "none"), seed: int = 0
            ) -> list[SimReport]:
    return [simulate(c, programs, initial, seed=seed) for c in controllers]
