"""The wire format: every message round-trips; every refusal has a stable code; any
input either parses or raises WireError (never anything else)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coagent_cli.daemon import PROTOCOL_VERSION, wire
from coagent_cli.errors import WireError

NOTICE = wire.Notice(id=1, key="file:a.py", kind="write_reordered", by="a0", op=3,
                     detail="a0 rewrote a.py", diff="--- a\n+++ b\n", steps=[4, 5])
SNAP = wire.Snapshot(cc="mtpo", agents=[wire.AgentInfo(name="a0", rank=0, state="running")],
                     ops=[wire.OpInfo(op=1, agent="a0", state="done", summary="ls",
                                      reads=["dir:"], writes=[])])

REQUESTS = [
    wire.Hello(id=1, protocol=PROTOCOL_VERSION, agent="a0", token="t"),
    wire.Hello(id="x", protocol=PROTOCOL_VERSION, role="monitor", token="t"),
    wire.BeginOp(id=2, command="sed -i s/a/b/ f", cwd="/w"),
    wire.BeginOp(id=3, tool=wire.ToolCall(tool="replace", params={"path": "f", "n": [1, {"a": None}]}),
                 cwd="/w"),
    wire.EndOp(id=4, op=7, exit_status=0, output_size=12),
    wire.Read(key="file:a.py"),
    wire.Read(tool=wire.ToolCall(tool="cat", params={"path": "a"})),
    wire.Inbox(peek=True), wire.Finish(), wire.Resume(), wire.Resume(agent="a1"),
    wire.Status(), wire.Subscribe(), wire.Shutdown(),
    wire.Retract(agent="a0", ops="all"), wire.Retract(agent="a0", ops=[1, 2]),
    wire.Usage(tokens=1200, cost=0.25),
]
REPLIES = [
    wire.HelloReply(id=1, rank=0, agent="a0"),
    wire.OpGranted(id=2, op=7, action="served", content="x\n", exit_status=0, notices=[NOTICE]),
    wire.OpEnded(op=7, pending_notices=1),
    wire.ReadReply(key="file:a", exists=True, content="aGk=", encoding="base64", version=3),
    wire.InboxReply(notices=[NOTICE]), wire.FinishReply(finished=False, notices=[NOTICE]),
    wire.ResumeReply(agent="a0"), wire.StatusReply(snapshot=SNAP), wire.Subscribed(queue=8),
    wire.ShutdownReply(), wire.RetractReply(agent="a0", ops=[1]), wire.UsageReply(id=5),
    wire.ErrorReply(id=9, code="bad_token", message="no"),
    wire.Event(seq=4, kind="notice", agent="a1", notice=NOTICE),
    wire.Event(seq=5, kind="snapshot", snapshot=SNAP, dropped=10),
]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: m.type)
def test_requests_round_trip(message: wire.WireModel) -> None:
    line = wire.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert wire.parse_request(line) == message


@pytest.mark.parametrize("message", REPLIES, ids=lambda m: m.type)
def test_replies_round_trip(message: wire.WireModel) -> None:
    assert wire.parse_reply(wire.encode(message)) == message


def test_every_request_type_has_one_reply_type_and_a_role() -> None:
    kinds = {type(m) for m in REQUESTS}
    assert kinds == set(wire.REPLY_FOR)
    allowed = set().union(*wire.ALLOWED.values())
    assert allowed == {m.type for m in REQUESTS} - {"hello"}


def _code(line: bytes, **kw: int) -> str:
    with pytest.raises(WireError) as info:
        wire.parse_request(line, **kw)
    return info.value.code


@pytest.mark.parametrize(("line", "code"), [
    (b"", "bad_json"),
    (b"{", "bad_json"),
    (b"\xff\xfe{}", "bad_json"),
    (b"[1, 2]", "bad_message"),
    (b'"hello"', "bad_message"),
    (b"{}", "bad_message"),
    (b'{"type": "launch_missiles"}', "unknown_type"),
    (b'{"type": "status", "extra": 1}', "bad_message"),
    (b'{"type": "end_op", "op": "1", "exit_status": 0}', "bad_message"),
    (b'{"type": "end_op", "op": 1, "exit_status": 256}', "bad_message"),
    (b'{"type": "end_op", "op": 0, "exit_status": 0}', "bad_message"),
    (b'{"type": "inbox", "peek": 1}', "bad_message"),
    (b'{"type": "begin_op", "cwd": "/"}', "bad_message"),
    (b'{"type": "begin_op", "cwd": "/", "command": "a", "tool": {"tool": "t"}}', "bad_message"),
    (b'{"type": "hello", "protocol": 1, "token": "t"}', "bad_message"),
    (b'{"type": "hello", "protocol": 1, "token": "t", "agent": "../x"}', "bad_message"),
    (b'{"type": "hello", "protocol": 1, "token": "t", "role": "monitor", "agent": "a"}', "bad_message"),
    (b'{"type": "retract", "agent": "a", "ops": []}', "bad_message"),
    (b'{"type": "status", "id": 1.5}', "bad_message"),
])
def test_refusals_have_stable_codes(line: bytes, code: str) -> None:
    assert _code(line) == code


def test_too_large_counts_the_line_without_its_newline() -> None:
    line = json.dumps({"type": "begin_op", "cwd": "/", "command": "x" * 100}).encode()
    assert wire.parse_request(line + b"\n", max_line=len(line)).type == "begin_op"
    assert _code(line + b" ", max_line=len(line)) == "too_large"


@pytest.mark.parametrize(("line", "rid"), [
    (b'{"type": "nope", "id": 7}', 7), (b'{"id": "abc"}', "abc"), (b'{"id": true}', None),
    (b'{"id": -1}', None), (b"[1]", None), (b"{", None), (b"[" * 100_000, None),
])
def test_guess_request_id(line: bytes, rid: object) -> None:
    assert wire.guess_request_id(line) == rid


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_wire_error(data: bytes) -> None:
    try:
        wire.parse_request(data)
    except WireError as exc:
        assert exc.code in {"bad_json", "bad_message", "unknown_type"}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
_types = st.sampled_from([m.type for m in REQUESTS] + ["error", "event", "", "HELLO"])


@settings(max_examples=300, deadline=None)
@given(_types, st.dictionaries(st.sampled_from(["id", "op", "agent", "token", "cwd", "command",
                                                  "protocol", "ops", "key", "peek", "tool", "zz"]),
                               _json, max_size=5))
def test_any_object_parses_or_raises_wire_error(kind: str, fields: dict[str, object]) -> None:
    line = json.dumps({"type": kind, **fields}).encode()
    try:
        request = wire.parse_request(line)
    except WireError as exc:
        assert exc.code in {"bad_message", "unknown_type"}
    else:
        assert wire.parse_request(wire.encode(request)) == request


def test_sync_client_import_stays_free_of_pydantic() -> None:
    code = ("import sys, coagent_cli.daemon.client; "
            "print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
