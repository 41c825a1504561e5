"""Notices: after a sequence, tell every other agent whose reads went stale, or whose
writes were re-applied differently or dropped. Plain functions; the engine numbers
the notices through `next_id`."""

from __future__ import annotations

from typing import Callable

from coagent_cli.core.keys import Key
from coagent_cli.core.ledger import Ledger
from coagent_cli.core.model import Action, Notice, NoticeKind, Notify, ResumeAgent
from coagent_cli.core.state import AgentState, Sequence, Stats

# (agent, key) -> (kind, old value, new value, the agent's steps that relied on it)
Found = dict[tuple[str, Key], tuple[NoticeKind, str | None, str, tuple[int, ...]]]

_SEVERITY = {"write_reordered": 0, "stale_read": 1, "write_dropped": 2}


def notify(ledger: Ledger, agents: dict[str, AgentState], stats: Stats, seq: Sequence,
           next_id: Callable[[], int]) -> list[Action]:
    """Notices for everything `seq` did to other agents, one per agent and key."""
    found: Found = {}
    _stale_reads(ledger, seq, found)
    _reordered_writes(ledger, seq, found)
    _dropped_writes(ledger, seq, found)
    return _deliver(agents, stats, found, seq.actor, next_id)


def _stale_reads(ledger: Ledger, seq: Sequence, found: Found) -> None:
    for k in seq.touched:
        for agent in _observers(ledger, k):
            stale = ledger.stale(agent, k) if agent != seq.actor else []
            if stale:
                old = stale[0][0].digest
                for o, now in stale:
                    o.digest = now  # the notice tells the agent the new value
                steps = tuple(op for o, _ in stale for op in o.op_ids)
                found[(agent, k)] = ("stale_read", old, stale[-1][1], steps)


def _reordered_writes(ledger: Ledger, seq: Sequence, found: Found) -> None:
    for op, before in seq.reordered.items():
        rec = ledger.ops[op]
        for k, had in before.items():
            now = rec.writes.get(k)
            if rec.agent != seq.actor and (now is None or now.after != had):
                _merge(found, (rec.agent, k), ("write_reordered", had, now.after if now else "", (op,)))


def _dropped_writes(ledger: Ledger, seq: Sequence, found: Found) -> None:
    for op in seq.dropped:
        rec = ledger.ops[op]
        for k, c in rec.writes.items():
            if rec.agent != seq.actor:
                new = ledger.visible(rec.agent, k) or ""
                _merge(found, (rec.agent, k), ("write_dropped", c.after, new, (op,)))


def _observers(ledger: Ledger, key: Key) -> list[str]:
    return [a for a, known in ledger.obs.items() if key in known]


def _deliver(agents: dict[str, AgentState], stats: Stats, found: Found, by: str,
             next_id: Callable[[], int]) -> list[Action]:
    out: list[Action] = []
    by_rank_then_key = sorted(found.items(), key=lambda x: (agents[x[0][0]].rank, str(x[0][1])))
    for (agent, key), (kind, old, new, steps) in by_rank_then_key:
        notice = Notice(next_id(), agent, key, kind, by, old, new, tuple(steps), _detail(kind, key, by))
        out.extend(_post(agents[agent], stats, notice))
    return out


def _post(a: AgentState, stats: Stats, notice: Notice) -> list[Action]:
    """Put the notice in the agent's inbox; a finished agent resumes to take it."""
    a.inbox[notice.notice_id] = notice
    stats.notices += 1
    out: list[Action] = [Notify(notice)]
    if a.status == "finished":
        a.status = "running"
        stats.resumes += 1
        out.append(ResumeAgent(a.name))
    return out


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
