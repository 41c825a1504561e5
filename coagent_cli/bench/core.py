"""Core throughput: ops per second through admit / execute / complete, and the peak
number of stored versions with and without collection.

The environment here is a stub that only tracks digests, so the figure is the cost of
the protocol core itself (what every op pays before any real I/O).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from coagent_cli.core import make_controller
from coagent_cli.core.driver import drain
from coagent_cli.core.engine import Engine
from coagent_cli.core.keys import Key
from coagent_cli.core.model import (
    ABSENT,
    Action,
    AgentFinished,
    AgentRegistered,
    Change,
    Completed,
    Event,
    NoticesTaken,
    Notify,
    OpRequested,
    OpSpec,
    ResumeAgent,
)


@dataclass
class CoreFigures:
    controller: str
    agents: int
    ops: int
    seconds: float
    peak_versions: int
    undos: int
    redos: int
    notices: int

    @property
    def ops_per_second(self) -> float:
        return self.ops / self.seconds if self.seconds else float("inf")


class _DigestEnv:
    """Tracks one digest per key; enough to answer every effect consistently."""

    def __init__(self) -> None:
        self.live: dict[Key, str] = {}
        self.images: dict[int, dict[Key, Change]] = {}
        self.specs: dict[int, OpSpec] = {}
        self._n = 0

    def _fresh(self) -> str:
        self._n += 1
        return f"d{self._n}"

    def execute(self, op: int, *, shadowed: bool = False) -> dict[Key, Change]:
        writes = {k: Change(self.live.get(k, ABSENT), self._fresh()) for k in self.specs[op].writes}
        for k, c in writes.items():
            self.live[k] = c.after
        self.images[op] = writes
        return writes

    def serve(self, op: int, sources: Mapping[Key, str]) -> None:
        """Reads need no state here: the digests are all the core looks at."""

    def undo(self, op: int) -> None:
        for k, c in self.images[op].items():
            self.live[k] = c.before

    def redo(self, op: int, *, base_changed: bool) -> tuple[bool, dict[Key, Change], str]:
        writes = {k: Change(self.live.get(k, ABSENT), self._fresh() if base_changed else c.after)
                  for k, c in self.images[op].items()}
        for k, c in writes.items():
            self.live[k] = c.after
        self.images[op] = writes
        return True, writes, ""


def run_core(controller: str = "mtpo", *, agents: int = 64, ops_per_agent: int = 1000, keys: int = 512,
             collect: bool = True, seed: int = 0, window: int = 8,
             progress: Callable[[int, int], None] | None = None) -> CoreFigures:
    """`progress(done, total)` is called every 1,000 ops (a progress bar, say)."""
    rng = random.Random(seed)
    core = make_controller(controller, collect_versions=collect)
    env = _DigestEnv()
    names = [f"a{i:02d}" for i in range(agents)]
    for rank, name in enumerate(names):
        core.handle(AgentRegistered(name, rank))
    left = {n: ops_per_agent for n in names}  # in rank order
    busy: set[str] = set()
    started = time.perf_counter()
    op_id = total = 0
    # A window of `window` agents runs at once; the next joins when one finishes, so
    # earlier ranks finish first and their versions can be collected.
    while left:
        name = rng.choice([n for n in list(left)[:window] if n not in busy] or list(left)[:1])
        op_id += 1
        spec = _random_op(rng, op_id, name, keys)
        env.specs[op_id] = spec
        busy.add(name)
        _drain(core, env, core.handle(OpRequested(spec)), busy)
        total += 1
        if progress is not None and total % 1000 == 0:
            progress(total, agents * ops_per_agent)
        left[name] -= 1
        if left[name] == 0:
            del left[name]
            _drain(core, env, core.handle(AgentFinished(name)), busy)
    seconds = time.perf_counter() - started
    s = core.stats
    return CoreFigures(controller, agents, total, seconds, s.peak_versions, s.undos, s.redos, s.notices)


def _random_op(rng: random.Random, op_id: int, agent: str, keys: int) -> OpSpec:
    k = frozenset({Key("file", f"src/f{rng.randrange(keys)}.py")})
    if rng.random() < 0.5:
        return OpSpec(op_id, agent, reads=k, servable=True)
    return OpSpec(op_id, agent, reads=k, writes=k, observes=frozenset())


def _drain(core: Engine, env: _DigestEnv, actions: list[Action], busy: set[str]) -> None:
    def react(a: Action) -> list[Event]:
        if isinstance(a, Completed):
            busy.discard(env.specs[a.op_id].agent)
        elif isinstance(a, Notify):  # taken at once; agents do not repair in this benchmark
            return [NoticesTaken(a.notice.agent, (a.notice.notice_id,))]
        elif isinstance(a, ResumeAgent):
            return [AgentFinished(a.agent)]
        return []

    drain(core, actions, env, react)
