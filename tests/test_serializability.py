"""The MTPO promise, checked over random programs and random interleavings: at
quiescence the state (and everything published) equals the serial run in rank order.

Every controller but `none` must hold it on every example; for `none` hypothesis must
find a counterexample, which shows the oracle can fail."""

import pytest
from hypothesis import HealthCheck, find, given, settings

from coagent_cli.sim.simulator import simulate
from sim_strategies import INITIAL, runs

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # CI must be deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("controller", ["mtpo", "2pl", "occ", "serial"])
def test_final_state_equals_the_serial_run(controller: str) -> None:
    @PROPERTY
    @given(runs())
    def check(run: tuple[dict, int]) -> None:
        programs, seed = run
        report = simulate(controller, programs, INITIAL, seed=seed)
        assert report.final == report.expected, (programs, seed)
        assert report.published == report.expected_published, (programs, seed)

    check()


@pytest.mark.timeout(300)
def test_no_control_is_caught_losing_updates() -> None:
    def wrong(run: tuple[dict, int]) -> bool:
        programs, seed = run
        return not simulate("none", programs, INITIAL, seed=seed).correct

    programs, seed = find(runs(), wrong, settings=settings(derandomize=True, database=None, max_examples=2000))
    report = simulate("none", programs, INITIAL, seed=seed)
    assert not report.correct
    assert report.final != report.expected or report.published != report.expected_published
