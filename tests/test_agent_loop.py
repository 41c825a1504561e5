"""The agent loop end to end: the real openai SDK against a fake server on loopback, bash and
declared tools on a real temp directory, notices, retries, limits, and the scripted model
reaching the same files and repairing after a notice. Time is a FakeClock: nothing sleeps."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI, Failure, Reply, Stall, call

from coagent_cli.agents import (Agent, AgentConfig, EndpointUnreachable, FakeClock,
                                LocalEnvironment, MissingApiKey, ModelConfig, ModelUnavailable,
                                Notice, Observation, OpenAIModel, Price, ScriptedModel, Usage,
                                make_model, read_trajectory)
from coagent_cli.agents.models import ModelRequestRefused
from coagent_cli.agents.prompts import NOTICE_HEADER
from coagent_cli.agents.trajectory import Trajectory
from coagent_cli.errors import CoagentError
from coagent_cli.tools import ToolLibrary

pytestmark = pytest.mark.timeout(30)
KEY_ENV = "COAGENT_TEST_KEY"
ENVIRON = {KEY_ENV: "sk-test"}


def environment(root: Path) -> LocalEnvironment:
    return LocalEnvironment(root, library=ToolLibrary.for_workspace(root, user_dir=root / "no"))


def llm(server: FakeOpenAI, clock: FakeClock, **overrides: Any) -> OpenAIModel:
    config = ModelConfig(name="fake-gpt", base_url=server.url, api_key_env=KEY_ENV,
                         request_timeout=5, **overrides)
    model = make_model(config, clock=clock, environ=ENVIRON)
    assert isinstance(model, OpenAIModel)
    return model


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and ".coagent" not in p.parts}


# One task, as script steps; the fake server plays the same calls for the LLM path.
TASK = "Create greeting.txt saying hello, then notes.txt, then make it say world."
STEPS: list[dict[str, Any]] = [
    {"bash": "printf 'hello\\n' > greeting.txt"},
    {"think": 2.0},
    {"tool": {"name": "write_file", "params": {"path": "notes.txt", "content": "a\nb\n"}}},
    {"tool": {"name": "replace_in_file",
              "params": {"path": "greeting.txt", "old": "hello", "new": "hello world"}}},
    {"bash": "cat greeting.txt >> notes.txt"},
]
FINAL = {"greeting.txt": "hello world\n", "notes.txt": "a\nb\nhello world\n"}


def as_replies(steps: list[dict[str, Any]]) -> list[Reply]:
    """The script's calls as server replies; the last two calls come in one reply."""
    calls = [call("bash", command=s["bash"]) if "bash" in s
             else (s["tool"]["name"], s["tool"]["params"]) for s in steps if "think" not in s]
    return [Reply(tool_calls=[c]) for c in calls[:-2]] + [Reply(tool_calls=calls[-2:])]


def test_llm_conversation_runs_bash_and_tools_on_real_files(tmp_path: Path) -> None:
    clock = FakeClock()
    with FakeOpenAI(*as_replies(STEPS), Reply("all done")) as server:
        model = llm(server, clock)
        agent = Agent("a0", TASK, model=model, env=environment(tmp_path), clock=clock)
        result = agent.run()
        model.close()
    assert files(tmp_path) == FINAL
    assert result.status == "done" and result.summary == "all done" and result.steps == 4
    assert len(server.requests) == 4
    first = server.requests[0]
    names = [t["function"]["name"] for t in first["tools"]]
    assert names[0] == "bash" and {"write_file", "replace_in_file", "read_file"} <= set(names)
    assert "parallel_tool_calls" not in first
    assert server.headers[0]["authorization"] == "Bearer sk-test"
    last = server.requests[-1]["messages"]
    assert [m["role"] for m in last[-3:]] == ["assistant", "tool", "tool"]
    assert last[-1]["content"].startswith("exit status 0")


def test_parallel_tool_calls_is_sent_only_when_configured(tmp_path: Path) -> None:
    clock = FakeClock()
    with FakeOpenAI() as server:
        model = llm(server, clock, parallel_tool_calls=False)
        Agent("a0", "nothing", model=model, env=environment(tmp_path), clock=clock).run()
        model.close()
    assert server.requests[0]["parallel_tool_calls"] is False


class NoticeAfterFirstOp(LocalEnvironment):
    """Plays an earlier agent: right after this agent's first op, agent `a0` rewrites
    config.txt and the notice it causes is delivered."""

    def bash(self, command: str) -> Observation:
        obs = super().bash(command)
        if obs.op_id == 1:
            (self.root / "config.txt").write_text("port=8080\nhost=example\n")
            self.post(Notice("file:config.txt", "a0", detail="a0 changed the port",
                             diff="-port=80\n+port=8080\n", steps=(obs.op_id,)))
        return obs


def test_notice_mid_run_reaches_next_request_and_repair_runs(tmp_path: Path) -> None:
    (tmp_path / "config.txt").write_text("port=80\nhost=example\n")
    clock = FakeClock()
    repair = "grep ^port= config.txt > port.txt"
    with FakeOpenAI(Reply(tool_calls=[call("bash", command="grep ^port= config.txt > port.txt")]),
                    Reply(tool_calls=[call("bash", command=repair)]), Reply("repaired")) as server:
        model = llm(server, clock)
        env = NoticeAfterFirstOp(tmp_path, library=ToolLibrary.for_workspace(tmp_path))
        result = Agent("a1", "copy the port", model=model, env=env, clock=clock).run()
        model.close()
    notice = server.requests[1]["messages"][-1]
    assert notice["role"] == "user" and notice["content"].startswith(NOTICE_HEADER)
    text = notice["content"]
    assert "`file:config.txt`" in text and "`a0`" in text and "+port=8080" in text
    assert "step 1 (bash: grep ^port= config.txt > port.txt)" in text
    assert server.requests[1]["messages"][-2]["role"] == "tool"  # after the tool result
    assert (tmp_path / "port.txt").read_text() == "port=8080\n"
    assert result.notices == 1 and result.status == "done"


def test_finished_llm_agent_is_resumed_with_a_notice(tmp_path: Path) -> None:
    clock = FakeClock()
    with FakeOpenAI(Reply(tool_calls=[call("bash", command="cp src.txt dst.txt")]), Reply("ok"),
                    Reply(tool_calls=[call("bash", command="cp src.txt dst.txt")]),
                    Reply("repaired")) as server:
        (tmp_path / "src.txt").write_text("v1\n")
        model = llm(server, clock)
        env = environment(tmp_path)
        agent = Agent("a1", "copy src to dst", model=model, env=env, clock=clock)
        assert agent.run().status == "done"
        (tmp_path / "src.txt").write_text("v2\n")  # the earlier agent a0 writes
        result = agent.resume([Notice("file:src.txt", "a0", steps=(1,))])
        model.close()
    assert (tmp_path / "dst.txt").read_text() == "v2\n"
    assert result.steps == 4 and result.notices == 1 and env.finished == 2
    assert NOTICE_HEADER in server.requests[2]["messages"][-1]["content"]


@pytest.mark.parametrize("status", [429, 500])
def test_retry_after_a_transient_error(tmp_path: Path, status: int) -> None:
    clock = FakeClock()
    with FakeOpenAI(Failure(status), Failure(status), Reply("fine")) as server:
        model = llm(server, clock)
        result = Agent("a0", "t", model=model, env=environment(tmp_path), clock=clock).run()
        model.close()
    assert result.status == "done" and len(server.requests) == 3
    assert clock.sleeps == [1.0, 2.0]  # exponential backoff, on the injected clock


def test_retry_after_a_timeout(tmp_path: Path) -> None:
    clock = FakeClock()
    with FakeOpenAI(Stall(1.0), Reply("fine")) as server:
        model = make_model(ModelConfig(name="m", base_url=server.url, api_key_env=KEY_ENV,
                                       request_timeout=0.2), clock=clock, environ=ENVIRON)
        result = Agent("a0", "t", model=model, env=environment(tmp_path), clock=clock).run()
        model.close()
    assert result.status == "done" and len(server.requests) == 2 and clock.sleeps == [1.0]


def test_connection_lost_mid_run_is_retried_then_reported(tmp_path: Path) -> None:
    clock = FakeClock()
    server = FakeOpenAI(Reply(tool_calls=[call("bash", command="true")])).start()

    class ServerGoesDown(LocalEnvironment):
        def bash(self, command: str) -> Observation:
            server.stop()
            return super().bash(command)

    model = llm(server, clock)
    env = ServerGoesDown(tmp_path, library=environment(tmp_path).library)
    with pytest.raises(ModelUnavailable, match="cannot reach"):
        Agent("a0", "t", model=model, env=env, clock=clock).run()
    model.close()
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]  # the default: 4 retries


def test_retries_exhausted_is_a_clear_error(tmp_path: Path) -> None:
    clock = FakeClock()
    config = AgentConfig.from_mapping({"retry": {"retries": 2, "backoff": 0.5}})
    with FakeOpenAI(*[Failure(503, "overloaded")] * 5) as server:
        model = make_model(ModelConfig(name="m", base_url=server.url, api_key_env=KEY_ENV),
                           clock=clock, retry=config.retry, environ=ENVIRON)
        agent = Agent("a0", "t", model=model, env=environment(tmp_path), config=config,
                      clock=clock)
        with pytest.raises(ModelUnavailable, match="HTTP 503.*overloaded"):
            agent.run()
        model.close()
    assert len(server.requests) == 3 and clock.sleeps == [0.5, 1.0]


def test_refused_key_is_not_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    with FakeOpenAI(Failure(401, "bad key")) as server:
        model = llm(server, clock)
        with pytest.raises(ModelRequestRefused, match=f"401.*{KEY_ENV}"):
            Agent("a0", "t", model=model, env=environment(tmp_path), clock=clock).run()
        model.close()
    assert len(server.requests) == 1 and clock.sleeps == []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_is_a_clear_coagent_error(tmp_path: Path) -> None:
    clock = FakeClock()
    url = f"http://127.0.0.1:{closed_port()}/v1"
    model = make_model(ModelConfig(name="m", base_url=url, api_key_env=KEY_ENV),
                       clock=clock, environ=ENVIRON)
    agent = Agent("a0", "t", model=model, env=environment(tmp_path), clock=clock)
    with pytest.raises(EndpointUnreachable, match="cannot reach the model endpoint") as info:
        agent.run()
    model.close()
    assert isinstance(info.value, CoagentError) and info.value.code == "endpoint_unreachable"
    assert url.rsplit("/", 1)[0] in str(info.value) and clock.sleeps == []
    assert agent.trajectory.events[-1]["event"] == "error"


def test_missing_api_key_is_a_clear_coagent_error() -> None:
    with pytest.raises(MissingApiKey, match="COAGENT_NO_SUCH_KEY") as info:
        make_model(ModelConfig(name="gpt-x", api_key_env="COAGENT_NO_SUCH_KEY"), environ={})
    assert isinstance(info.value, CoagentError) and isinstance(info.value, ValueError)


def test_usage_is_summed_and_priced(tmp_path: Path) -> None:
    clock = FakeClock()
    prices = {"fake-gpt": Price(input=2.0, output=10.0, cached_input=0.5)}
    config = AgentConfig(prices=prices)
    with FakeOpenAI(Reply(tool_calls=[call("bash", command="true")], usage=(1000, 100, 400)),
                    Reply("done", usage=(2000, 50, None))) as server:
        model = llm(server, clock)
        result = Agent("a0", "t", model=model, env=environment(tmp_path), config=config,
                       clock=clock).run()
        model.close()
    assert result.usage == Usage(prompt=3000, completion=150, cached=400)
    assert result.cost == pytest.approx((2600 * 2.0 + 400 * 0.5 + 150 * 10.0) / 1e6)


def test_max_steps_stops_the_loop(tmp_path: Path) -> None:
    clock = FakeClock()
    forever = Reply(tool_calls=[call("bash", command="echo x >> log.txt")])
    config = AgentConfig(max_steps=3)
    with FakeOpenAI(default=forever) as server:
        model = llm(server, clock)
        env = environment(tmp_path)
        result = Agent("a0", "t", model=model, env=env, config=config, clock=clock).run()
        model.close()
    assert result.status == "max_steps" and result.steps == 3 and len(server.requests) == 3
    assert (tmp_path / "log.txt").read_text() == "x\n" * 3 and env.finished == 1


def test_bad_calls_are_reported_to_the_model_not_raised(tmp_path: Path) -> None:
    clock = FakeClock()
    with FakeOpenAI(Reply(tool_calls=[call("nope"), call("write_file", path="../out", content="x"),
                                      call("bash")]), Reply("done")) as server:
        model = llm(server, clock)
        Agent("a0", "t", model=model, env=environment(tmp_path), clock=clock).run()
        model.close()
    results = [m["content"] for m in server.requests[1]["messages"] if m["role"] == "tool"]
    assert "no tool named 'nope'" in results[0]
    assert "outside" in results[1].lower() and "bash needs" in results[2]
    assert not (tmp_path.parent / "out").exists()


def test_tools_are_refreshed_when_the_library_changes(tmp_path: Path) -> None:
    clock = FakeClock()
    env = environment(tmp_path)
    spec = ("name: shout\ndescription: Print a word loudly.\nparams:\n  word: {type: string}\n"
            "command: echo {word}\ninverse: none\n")

    class GrowsATool(LocalEnvironment):
        def bash(self, command: str) -> Observation:
            (self.root / ".coagent" / "tools").mkdir(parents=True)
            (self.root / ".coagent" / "tools" / "shout.yaml").write_text(spec)
            self.library.reload()
            return super().bash(command)

    env = GrowsATool(tmp_path, library=env.library)
    with FakeOpenAI(Reply(tool_calls=[call("bash", command="true")]),
                    Reply(tool_calls=[call("shout", word="hey")]), Reply("done")) as server:
        model = llm(server, clock)
        Agent("a0", "t", model=model, env=env, clock=clock).run()
        model.close()
    offered = [[t["function"]["name"] for t in r["tools"]] for r in server.requests]
    assert "shout" not in offered[0] and "shout" in offered[1]
    assert server.requests[2]["messages"][-1]["content"] == "exit status 0\nhey\n"


# --- the scripted model --------------------------------------------------------------------

def test_scripted_model_reaches_the_same_files_as_the_llm_path(tmp_path: Path) -> None:
    llm_dir, scripted_dir = tmp_path / "llm", tmp_path / "scripted"
    llm_dir.mkdir(), scripted_dir.mkdir()
    clock = FakeClock()
    with FakeOpenAI(*as_replies(STEPS)) as server:
        model = llm(server, clock)
        Agent("a0", TASK, model=model, env=environment(llm_dir), clock=clock).run()
        model.close()
    clock = FakeClock()
    scripted = make_model(ModelConfig(script=STEPS), clock=clock)
    result = Agent("a0", TASK, model=scripted, env=environment(scripted_dir), clock=clock).run()
    assert files(scripted_dir) == files(llm_dir) == FINAL
    assert result.status == "done" and result.steps == 5 and clock.sleeps == [2.0]
    assert result.usage.total > 0  # estimated, 4 characters a token


def test_scripted_agent_repairs_after_a_notice_when_resumed(tmp_path: Path) -> None:
    """a1 (rank 1) counts the lines of list.txt and finishes; then a0 (rank 0) appends a line;
    the notice resumes a1, which re-reads and redoes only the step that depended on it."""
    (tmp_path / "list.txt").write_text("x\ny\n")
    script = {"steps": [
        {"bash": "cat list.txt"},
        {"think": 1.0},
        {"bash": "wc -l < list.txt | tr -d ' ' > count.txt", "after_read": "list.txt"},
        {"tool": {"name": "write_file", "params": {"path": "other.txt", "content": "k\n"}}},
    ], "repair_think": 0.5}
    clock = FakeClock()
    env = environment(tmp_path)
    runs = tmp_path / ".coagent" / "runs" / "r1"
    model = ScriptedModel(script, clock=clock)
    agent = Agent("a1", "count", model=model, env=env, clock=clock,
                  trajectory=Trajectory(runs, "a1"))
    assert agent.run().status == "done"
    assert (tmp_path / "count.txt").read_text() == "2\n"
    with (tmp_path / "list.txt").open("a") as f:  # a0's write
        f.write("z\n")
    read_ops = tuple(op.op_id for op in env.ops if "list.txt" in op.text)
    result = agent.resume([Notice("file:list.txt", "a0", diff="+z\n", steps=read_ops)])
    assert (tmp_path / "count.txt").read_text() == "3\n"
    assert model.repairs == 1 and result.notices == 1 and clock.sleeps == [1.0, 0.5]
    redone = [op.text if op.kind == "bash" else op.params for op in env.ops[3:]]
    assert redone == [{"path": "list.txt"}, "wc -l < list.txt | tr -d ' ' > count.txt"]
    events = read_trajectory(runs / "a1.jsonl")
    assert [e["event"] for e in events].count("notice") == 1
    assert events[-1]["event"] == "stop" and events[-1]["status"] == "done"
    notice_msg = [e for e in events if e["event"] == "message"
                  and NOTICE_HEADER in str(e["message"].get("content"))]
    assert "step 1 (bash: cat list.txt)" in notice_msg[0]["message"]["content"]


def test_scripted_repair_without_after_read_reruns_from_first_touch(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("1\n")
    steps = [{"bash": "echo start > log.txt"}, {"bash": "cp a.txt b.txt"},
             {"bash": "sed 's/^/n=/' b.txt > c.txt"}]
    clock = FakeClock()
    env = environment(tmp_path)
    agent = Agent("a1", "t", model=ScriptedModel(steps, clock=clock), env=env, clock=clock)
    agent.run()
    (tmp_path / "a.txt").write_text("2\n")
    agent.resume([Notice("file:a.txt", "a0", steps=(2,))])
    assert (tmp_path / "c.txt").read_text() == "n=2\n"
    assert [op.text for op in env.ops[3:]][1:] == ["cp a.txt b.txt", "sed 's/^/n=/' b.txt > c.txt"]


def test_wall_time_and_token_limits_stop_the_scripted_agent(tmp_path: Path) -> None:
    steps = [{"think": 10}, {"bash": "echo 1 > a"}, {"think": 10}, {"bash": "echo 2 > a"},
             {"bash": "echo 3 > a"}]
    clock = FakeClock()
    config = AgentConfig(wall_time=15)
    result = Agent("a0", "t", model=ScriptedModel(steps, clock=clock),
                   env=environment(tmp_path), config=config, clock=clock).run()
    # Limits are checked before each turn; a turn begun in time (at 10 s) is completed.
    assert result.status == "wall_time" and (tmp_path / "a").read_text() == "2\n"
    assert result.steps == 2 and result.time == 20
    clock = FakeClock()
    config = AgentConfig(max_tokens=1)
    result = Agent("a0", "t", model=ScriptedModel(steps, clock=clock),
                   env=environment(tmp_path), config=config, clock=clock).run()
    assert result.status == "max_tokens" and result.steps == 1


def test_config_validation_is_a_usage_error() -> None:
    with pytest.raises(CoagentError, match="exactly one of think, bash, tool"):
        AgentConfig.from_mapping({"model": {"script": [{"bash": "x", "think": 1}]}})
    config = AgentConfig().overridden(name="gpt-4o", base_url=None)
    assert config.model.name == "gpt-4o" and json.loads(config.model_dump_json())
