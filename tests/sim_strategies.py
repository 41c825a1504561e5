"""Hypothesis strategies: random agent programs over a small nested key space."""

from __future__ import annotations

from hypothesis import strategies as st

from coagent_cli.sim.program import Append, Emit, Raw, Read, Replace, Think, Write

FILES = ("file:d0/a", "file:d0/b", "file:d0/e/f", "file:d1/a", "file:top")
COVERING = ("dir:d0", "dir:d0/e", "dir:d1", "dir:", "*")
INITIAL = {"file:d0/a": "a", "file:d0/b": "b", "file:top": "t"}

files = st.sampled_from(FILES)
readable = st.sampled_from(FILES + COVERING)
cost = st.integers(0, 3)


def step(agent: str) -> st.SearchStrategy:
    token = st.sampled_from(["x", "y", agent])
    return st.one_of(
        st.builds(Think, st.integers(1, 6)),
        st.builds(Read, st.lists(readable, min_size=1, max_size=2, unique=True).map(tuple), st.booleans(), cost),
        st.builds(Write, files, st.lists(readable, max_size=2, unique=True).map(tuple), cost),
        st.builds(Append, files, token, cost),
        st.builds(Replace, files, token, token, cost),
        st.builds(Emit, st.lists(files, min_size=1, max_size=2, unique=True).map(tuple), cost),
        st.builds(Raw, files, cost),
    )


@st.composite
def programs(draw: st.DrawFn, min_agents: int = 2, max_agents: int = 6) -> dict:
    n = draw(st.integers(min_agents, max_agents))
    names = [f"ag{i}" for i in range(n)]
    return {name: tuple(draw(st.lists(step(name), min_size=1, max_size=6))) for name in names}


@st.composite
def runs(draw: st.DrawFn) -> tuple[dict, int]:
    """A random program set and a random interleaving (the simulator's seed)."""
    return draw(programs()), draw(st.integers(0, 2**32 - 1))
