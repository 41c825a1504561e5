"""The ledger: which writes are live on which key, in what order, and who saw what.

Pure data, no policy. Every controller keeps one. For each concrete key it holds the
chain of live writes sorted by (rank, seq): the logical order the state must reflect.
MTPO keeps the physical state equal to applying each chain in order; the baselines
get the same order from their locks or validation.

Versions are digests; the environment stores values content-addressed, so "the
version of key K visible to rank i" is just a digest the core can name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Literal

from coagent_cli.core.keys import Key, conflicts
from coagent_cli.core.model import Change, Digest, OpSpec

OpState = Literal["waiting", "held", "running", "live", "undone", "done", "dropped", "retracted"]


@dataclass(slots=True)
class OpRecord:
    spec: OpSpec
    rank: int
    seq: int
    state: OpState = "waiting"
    applied: bool = False  # physically present in the live state
    applied_at: int = 0  # physical application clock, for newest-first undo
    writes: dict[Key, Change] = field(default_factory=dict)

    @property
    def op_id(self) -> int:
        return self.spec.op_id

    @property
    def agent(self) -> str:
        return self.spec.agent

    @property
    def order(self) -> tuple[int, int]:
        return (self.rank, self.seq)

    @property
    def written(self) -> frozenset[Key]:
        """Keys this op wrote, or (before it ran) declared it would write."""
        return frozenset(self.writes) if self.writes else self.spec.writes


@dataclass(slots=True)
class Observation:
    """The value an agent last saw of a key, and at which point of its trajectory."""

    seq: int
    digest: Digest | None  # None: the key's original value, digest not known yet
    op_ids: tuple[int, ...] = ()


class Ledger:
    def __init__(self) -> None:
        self.ranks: dict[str, int] = {}
        self.ops: dict[int, OpRecord] = {}
        self.chains: dict[Key, list[int]] = {}
        self.base: dict[Key, Digest] = {}
        self.obs: dict[str, dict[Key, list[Observation]]] = {}
        self.patterns: dict[str, list[tuple[Key, Observation]]] = {}
        self._seq = 0
        self._clock = 0
        self.peak_versions = 0

    # ------------------------------------------------------------------ ops and order

    def add_op(self, spec: OpSpec) -> OpRecord:
        self._seq += 1
        rec = OpRecord(spec=spec, rank=self.ranks[spec.agent], seq=self._seq)
        self.ops[spec.op_id] = rec
        return rec

    def tick(self) -> int:
        self._clock += 1
        return self._clock

    def chain_keys(self, pattern: Key) -> Iterator[Key]:
        if pattern.is_concrete:
            if pattern in self.chains:
                yield pattern
            return
        yield from (k for k in self.chains if conflicts(pattern, k))

    def known_keys(self, pattern: Key) -> Iterator[Key]:
        """Every concrete key the ledger has a value for (live chain or base)."""
        if pattern.is_concrete:
            yield pattern
            return
        yield from sorted(k for k in self.chains.keys() | self.base.keys() if pattern.covers(k))

    def keys_touching(self, patterns: Iterable[Key]) -> set[Key]:
        found: set[Key] = set()
        for p in patterns:
            found.update(self.chain_keys(p))
        return found

    def later_writers(self, patterns: Iterable[Key], rank: int) -> set[int]:
        """Live writes of ranks above `rank` on any key the patterns cover."""
        out: set[int] = set()
        for k in self.keys_touching(patterns):
            out.update(o for o in self.chains[k] if self.ops[o].rank > rank)
        return out

    def closure(self, op_ids: Iterable[int]) -> set[int]:
        """Everything that must be undone to undo and re-apply these ops: the ops
        themselves and, transitively, every live write ordered after one of them on
        a key it writes (stacked on it) or reads (its re-run must not see them)."""
        todo = list(op_ids)
        seen = set(todo)
        while todo:
            rec = self.ops[todo.pop()]
            for above in self._after(rec):
                if above not in seen:
                    seen.add(above)
                    todo.append(above)
        return seen

    def _after(self, rec: OpRecord) -> Iterator[int]:
        for k in self.keys_touching(set(rec.writes) | rec.spec.reads):
            for o in self.chains[k]:
                if self.ops[o].order > rec.order:
                    yield o

    def shadowed_beneath(self, op_ids: set[int]) -> list[int]:
        """Unapplied (shadowed) writes directly beneath ops about to be undone: once
        their overwrite is gone they must be materialised."""
        out: list[int] = []
        for o in op_ids:
            for k in self.ops[o].writes:
                chain = self.chains.get(k, [])
                i = chain.index(o) - 1 if o in chain else -1
                while i >= 0 and not self.ops[chain[i]].applied:
                    if chain[i] not in op_ids and chain[i] not in out:
                        out.append(chain[i])
                    i -= 1
        return sorted(out, key=lambda o: self.ops[o].order)

    # -------------------------------------------------------------- chains and values

    def insert(self, rec: OpRecord, writes: dict[Key, Change]) -> None:
        """Record an executed write in the chains of the keys it wrote."""
        rec.writes = dict(writes)
        for k, change in writes.items():
            chain = self.chains.setdefault(k, [])
            if not chain and k not in self.base:
                self.learn_base(k, change.before)
            pos = len(chain)
            while pos > 0 and self.ops[chain[pos - 1]].order > rec.order:
                pos -= 1
            chain.insert(pos, rec.op_id)
        self._count_versions()

    def update_writes(self, rec: OpRecord, writes: dict[Key, Change]) -> None:
        """A redo wrote possibly different values (and keys)."""
        self.remove(rec)
        self.insert(rec, writes)

    def remove(self, rec: OpRecord) -> None:
        for k in rec.writes:
            chain = self.chains.get(k)
            if chain and rec.op_id in chain:
                chain.remove(rec.op_id)
                if not chain:
                    del self.chains[k]

    def learn_base(self, key: Key, digest: Digest) -> None:
        """First time we hear of a key: its original value. Readers who saw it
        before anyone wrote it saw exactly this."""
        self.base[key] = digest
        for agent, pats in self.patterns.items():
            for pattern, o in pats:
                if pattern.covers(key):
                    self._add_obs(agent, key, Observation(o.seq, digest, o.op_ids))
        for known in self.obs.values():
            for o in known.get(key, ()):
                if o.digest is None:
                    o.digest = digest

    def visible(self, agent: str, key: Key, upto_seq: int | None = None) -> Digest | None:
        """The order-filtered value of `key` for `agent`: writes of earlier ranks, and
        the agent's own writes made before `upto_seq` (all of them when None)."""
        rank = self.ranks[agent]
        for o in reversed(self.chains.get(key, ())):
            rec = self.ops[o]
            if rec.rank < rank or (
                rec.agent == agent and (upto_seq is None or rec.seq < upto_seq)
            ):
                return rec.writes[key].after
        return self.base.get(key)

    def physical(self, key: Key) -> Digest | None:
        for o in reversed(self.chains.get(key, ())):
            rec = self.ops[o]
            if rec.applied:
                return rec.writes[key].after
        return self.base.get(key)

    # ------------------------------------------------------------------ observations

    def observe(self, rec: OpRecord, also: Iterable[Key] = ()) -> None:
        """The agent saw the op's observed keys as they were visible to it then."""
        agent, seq = rec.agent, rec.seq
        for pattern in sorted(set(rec.spec.seen) | set(also)):  # a replayable order
            if not pattern.is_concrete:
                self.patterns.setdefault(agent, []).append((pattern, Observation(seq, None, (rec.op_id,))))
            for k in self.known_keys(pattern):
                self._add_obs(agent, k, Observation(seq, self.visible(agent, k, seq), (rec.op_id,)))

    def _add_obs(self, agent: str, key: Key, o: Observation) -> None:
        entries = self.obs.setdefault(agent, {}).setdefault(key, [])
        if any(e.seq == o.seq for e in entries):
            return
        entries.append(o)
        entries.sort(key=lambda e: e.seq)

    def forget_from(self, agent: str, seq: int) -> None:
        """The agent discards what it saw from `seq` on (it is replaying from there)."""
        for k, entries in list(self.obs.get(agent, {}).items()):
            kept = [e for e in entries if e.seq < seq]
            if kept:
                self.obs[agent][k] = kept
            else:
                del self.obs[agent][k]
        if agent in self.patterns:
            self.patterns[agent] = [(p, o) for p, o in self.patterns[agent] if o.seq < seq]

    def stale(self, agent: str, key: Key) -> list[tuple[Observation, Digest]]:
        """Each time the agent saw key with a value other than what it would see now
        at the same point of its trajectory: (what it saw, the value now)."""
        out = []
        for o in self.obs.get(agent, {}).get(key, ()):
            now = self.visible(agent, key, o.seq)
            if now is None:  # never written by anyone: nothing can have changed
                continue
            if o.digest != now and not (o.digest is None and now == self.base.get(key)):
                out.append((o, now))
        return out

    # -------------------------------------------------------------------- collection

    def collect(self, ranks_upto: int) -> int:
        """Every agent of rank <= r is finished for good: fold their writes into the
        base and forget their ops and observations. Returns versions freed."""
        freed, kept = 0, set()
        for k in list(self.chains):
            chain = self.chains[k]
            n = 0
            while n < len(chain) and self.ops[chain[n]].rank <= ranks_upto:
                n += 1
            while n and not self.ops[chain[n - 1]].applied:
                n -= 1  # a shadowed write stays until its overwrite is settled too
            kept.update(o for o in chain[n:] if self.ops[o].rank <= ranks_upto)
            if n:
                self.base[k] = self.ops[chain[n - 1]].writes[k].after
                del chain[:n]
                freed += n
                if not chain:
                    del self.chains[k]
        for o, r in list(self.ops.items()):
            if r.rank <= ranks_upto and r.state != "running" and o not in kept:
                del self.ops[o]
        for agent, rank in self.ranks.items():
            if rank <= ranks_upto:
                self.obs.pop(agent, None)
                self.patterns.pop(agent, None)
        return freed

    def version_count(self) -> int:
        return sum(len(c) for c in self.chains.values()) + len(self.base)

    def _count_versions(self) -> None:
        self.peak_versions = max(self.peak_versions, self.version_count())
