"""`coagent run` and `coagent demo` end to end: an in-process daemon on real files, built-in
scripted agents, an external `command:` agent, the real openai SDK against a fake server,
and the CLI's exit codes and JSON report. Think times are short (tenths of seconds)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import typer
from fake_openai import FakeOpenAI, Reply, call
from typer.testing import CliRunner

from coagent_cli.agents.prompts import NOTICE_HEADER
from coagent_cli.run.cli import demo_cmd, run_cmd
from coagent_cli.run.demo import run_demo
from coagent_cli.run.launcher import RunOptions, run_plan
from coagent_cli.run.plan import parse_plan

pytestmark = pytest.mark.timeout(90)

KEY_ENV = "COAGENT_TEST_KEY"


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cgrun", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def cli() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("run")(run_cmd)
    app.command("demo")(demo_cmd)
    return app


# ---------------------------------------------------------------- the demo


def test_demo_mtpo_tree_equals_the_serial_tree(tmp_path: Path) -> None:
    result = run_demo(think=0.25, keep=tmp_path / "kept")
    assert result.mtpo.ok and result.serial.ok, result.mtpo.failure_lines() + result.serial.failure_lines()
    assert result.equal, result.differing
    totals = result.mtpo.totals()
    assert totals["notices"] >= 1 and totals["undos"] >= 1 and totals["redos"] >= 1
    changelog = (tmp_path / "kept" / "mtpo" / "CHANGELOG.md").read_text()
    assert changelog.index("(alice)") < changelog.index("(bob)") < changelog.index("(carol)")
    assert "Version: 1.1" in (tmp_path / "kept" / "mtpo" / "README.md").read_text()
    assert result.check()["equal"] is True and result.mtpo.check is not None


# ---------------------------------------------------------------- read-modify-write

# Each agent reads team.txt, thinks, then writes the whole file back with its own line
# changed: the classic lost update when nothing orders them. MTPO re-applies bob's
# misplaced write as a three-way merge on alice's; bob's repair recomputes his count.
TEAM = "lead: ?\n1\n2\n3\n4\nmembers: ?\n"


def rmw_agent(name: str, pause: float, old: str, new: str) -> dict[str, Any]:
    steps = [{"tool": {"name": "read_file", "params": {"path": "team.txt"}}},
             {"think": pause},
             {"tool": {"name": "write_file", "params": {"path": "team.txt", "content": TEAM.replace(old, new)}}},
             {"bash": f"grep -c ': ?' team.txt > {name}.open || true", "after_read": ["team.txt"]}]
    return {"name": name, "task": "fill in your line of team.txt", "script": steps}


def rmw_plan(workspace: Path, cc: str) -> Path:
    (workspace / "team.txt").write_text(TEAM)
    plan = {"cc": cc, "agents": [rmw_agent("alice", 0.6, "lead: ?", "lead: alice"),
                                 rmw_agent("bob", 0.2, "members: ?", "members: bob")]}
    path = workspace / "plan.yaml"
    path.write_text(json.dumps(plan))
    return path


def test_run_cli_mtpo_read_modify_write_equals_serial_with_a_json_report(workspace: Path) -> None:
    plan = rmw_plan(workspace, "mtpo")
    out = workspace / "report.json"
    done = CliRunner().invoke(cli(), ["run", str(plan), "--workspace", str(workspace), "--json", str(out), "--no-live"])
    assert done.exit_code == 0, done.output
    assert (workspace / "team.txt").read_text() == "lead: alice\n1\n2\n3\n4\nmembers: bob\n"
    assert (workspace / "bob.open").read_text() == "0\n"
    report = json.loads(out.read_text())
    assert report["controller"] == "mtpo" and report["ok"] is True and report["quiescent"] is True
    assert set(report["totals"]) >= {"ops", "tokens", "notices", "undos", "redos"}
    assert report["wall_time"] > 0 and report["totals"]["notices"] >= 1
    alice, bob = report["agents"]
    assert (alice["name"], alice["rank"], bob["rank"]) == ("alice", 0, 1)
    for field in ("status", "steps", "tokens", "notices", "undone", "redone", "thinking", "waiting", "wall"):
        assert field in bob
    assert bob["status"] == "finished" and bob["notices"] >= 1 and bob["tokens"] > 0
    run_dir = Path(report["run_dir"])
    assert (run_dir / "alice.jsonl").is_file() and (run_dir / "bob.jsonl").is_file()
    assert (run_dir / "report.json").is_file()


def test_cc_none_loses_an_update(workspace: Path) -> None:
    plan = rmw_plan(workspace, "none")
    done = CliRunner().invoke(cli(), ["run", str(plan), "--workspace", str(workspace), "--no-live"])
    assert done.exit_code == 0, done.output
    assert (workspace / "team.txt").read_text() == "lead: alice\n1\n2\n3\n4\nmembers: ?\n"  # bob's is lost


def test_a_bad_plan_is_one_clear_line_and_exit_2(workspace: Path) -> None:
    plan = workspace / "plan.yaml"
    plan.write_text("cc: mtpo\nagents:\n  - name: alice\n    task: t\n    script: [{bash: ls}]\n"
                    "  - name: bob\n    comand: python x.py\n")
    done = CliRunner().invoke(cli(), ["run", str(plan)])
    assert done.exit_code == 2
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(plan) in lines[0] and "agents.1" in lines[0], done.output
    assert "Traceback" not in done.output
    plan.write_text("agents: [\n")
    done = CliRunner().invoke(cli(), ["run", str(plan)])
    assert done.exit_code == 2 and "not valid YAML" in done.output


def test_a_failing_external_agent_fails_the_run_with_one_line(workspace: Path) -> None:
    plan = parse_plan({"agents": [{"name": "broken", "command": "echo boom >&2; exit 3"}]}, "test")
    report = run_plan(plan, RunOptions(workspace))
    assert not report.ok
    assert report.failure_lines() == ["broken: failed: `echo boom >&2; exit 3` exited with status 3 (boom)"]


# ---------------------------------------------------------------- a mixed plan

EXTERNAL = r'''
import json, os, subprocess, sys, time

def coagent(*args):
    return subprocess.run(["coagent", *args], capture_output=True, text=True, check=False)

if os.environ.get("COAGENT_RESUME"):
    notices = json.loads(coagent("inbox", "--json").stdout)
    assert notices and all(n["by"] == "alice" for n in notices), notices
else:
    time.sleep(0.1)
seen = int(coagent("exec", "--", "cat counter.txt").stdout.strip())
if not os.environ.get("COAGENT_RESUME"):
    time.sleep(0.3)
status = coagent("exec", "--", f"echo {seen + 1} > counter.txt").returncode
sys.exit(status)
'''


@pytest.mark.skipif(shutil.which("coagent", path=str(Path(sys.executable).parent)) is None,
                    reason="the coagent command is not installed next to this python")
def test_mixed_plan_builtin_and_external_reaches_quiescence_with_the_serial_result(workspace: Path) -> None:
    (workspace / "counter.txt").write_text("0\n")
    (workspace / "bob.py").write_text(EXTERNAL)
    alice = {"name": "alice", "task": "increment", "script": [
        {"think": 3.0}, {"bash": "n=$(cat counter.txt); echo $((n + 1)) > counter.txt"}]}
    plan = parse_plan({"agents": [alice, {"name": "bob", "command": f"{sys.executable} bob.py"}]}, "test")
    report = run_plan(plan, RunOptions(workspace))
    assert report.ok, report.failure_lines()
    assert (workspace / "counter.txt").read_text() == "2\n"
    bob = report.agents[1]
    assert bob.kind == "external" and bob.notices >= 1 and bob.resumes >= 1


# ---------------------------------------------------------------- the LLM path


def test_llm_agents_second_gets_the_notice_in_its_conversation_and_repairs(
        workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    (workspace / "config.txt").write_text("port=80\nhost=example\n")
    write = "printf 'port=8080\\nhost=example\\n' > config.txt"
    copy = "grep ^port= config.txt > port.txt"
    # a0 answers late (a short stall, then the client's retry), so a1 has read config.txt first
    from fake_openai import Stall

    with FakeOpenAI(Stall(0.3), Reply(tool_calls=[call("bash", command=write)]), Reply("written")) as first, \
         FakeOpenAI(Reply(tool_calls=[call("bash", command=copy)]), Reply("copied"),
                    Reply(tool_calls=[call("bash", command=copy)]), Reply("repaired")) as second:
        agents = [{"name": "a0", "task": "set the port to 8080", "base_url": first.url},
                  {"name": "a1", "task": "copy the port line to port.txt", "base_url": second.url}]
        plan = parse_plan({"model": "fake-gpt", "api_key_env": KEY_ENV, "agents": agents}, "test")
        report = run_plan(plan, RunOptions(workspace, time_limit=60))
    assert report.ok, report.failure_lines()
    assert (workspace / "port.txt").read_text() == "port=8080\n"
    notices = [m["content"] for r in second.requests for m in r["messages"]
               if m["role"] == "user" and m["content"].startswith(NOTICE_HEADER)]
    assert notices and "`file:config.txt`" in notices[0] and "`a0`" in notices[0]
    assert "+port=8080" in notices[0]
    a1 = report.agents[1]
    assert a1.notices >= 1 and a1.resumes >= 1 and a1.tokens == 4 * 15
