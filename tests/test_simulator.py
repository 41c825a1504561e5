"""The simulator on the built-in contended scenario, and the demo/bench commands."""

import json
import subprocess
import sys

import pytest

from coagent_cli.sim.scenarios import contended_repo
from coagent_cli.sim.simulator import compare, serial_oracle, simulate


@pytest.mark.parametrize("seed", range(10))
def test_contended_scenario_mtpo_beats_serial_with_its_result(seed: int) -> None:
    s = contended_repo()
    reports = {r.controller: r for r in compare(s.programs, s.initial, seed=seed)}
    for name in ("serial", "mtpo", "2pl", "occ"):
        assert reports[name].correct, name
    assert reports["mtpo"].makespan < 0.8 * reports["serial"].makespan
    assert reports["mtpo"].stats["notices"] > 0  # contention was real and was repaired


def test_none_loses_work_on_the_contended_scenario() -> None:
    s = contended_repo()
    assert not simulate("none", s.programs, s.initial, seed=1).correct


def test_serial_oracle_is_the_serial_controller() -> None:
    s = contended_repo()
    final, published = serial_oracle(s.programs, s.initial)
    report = simulate("serial", s.programs, s.initial, seed=3)
    assert (report.final, report.published) == (final, published)
    assert report.stats["notices"] == report.stats["undos"] == 0


def test_simulate_command_prints_the_comparison_and_checks_the_state(tmp_path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "coagent_cli", "simulate", "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "MTPO final state equals the serial run" in proc.stdout
    rows = {r["controller"]: r for r in json.loads(out.read_text())}
    assert rows["mtpo"]["final"] == rows["mtpo"]["expected"]
    assert rows["none"]["final"] != rows["none"]["expected"]


def test_bench_core_reports_collection_savings() -> None:
    proc = subprocess.run([sys.executable, "-m", "coagent_cli", "bench", "--core", "--agents", "16", "--ops", "100"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ops/s with collection" in proc.stdout and "peak stored versions" in proc.stdout


def test_bad_controller_is_one_clear_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "coagent_cli", "bench", "--core", "--controller", "nope"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown controller 'nope'" in proc.stderr
