"""Every message that crosses the daemon's socket, as a typed model.

Framing: one JSON object per line, UTF-8, `\\n`-terminated. Every object has a literal
`type` tag; unknown fields are refused; values are checked strictly (no "1" for 1).
Requests carry an optional `id` chosen by the client; the reply to a request echoes it.

    client -> server   Request  = Hello | BeginOp | EndOp | Read | Inbox | Finish | Resume
                                  | Status | Subscribe | Shutdown | Retract | Usage
    server -> client   Reply    = Response | Event
                       Response = HelloReply | OpGranted | OpEnded | ReadReply | InboxReply
                                  | FinishReply | ResumeReply | StatusReply | Subscribed
                                  | ShutdownReply | RetractReply | UsageReply | ErrorReply

`parse_request` is the one way bytes become a Request; it raises WireError with a stable
code and nothing else. `REPLY_FOR` says which Response answers which Request, and
`ALLOWED` which role may send what (the transport enforces both).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, ValidationError, model_validator

from coagent_cli.daemon import (
    BAD_JSON,
    BAD_MESSAGE,
    BAD_REPLY,
    MAX_LINE,
    PROTOCOL_VERSION,
    TOO_LARGE,
    UNKNOWN_TYPE,
)
from coagent_cli.errors import WireError

__all__ = [
    "PROTOCOL_VERSION", "Request", "Response", "Reply", "Notice", "Event", "Snapshot",
    "parse_request", "parse_reply", "encode", "error_reply", "guess_request_id",
]

# ---------------------------------------------------------------- field types

RequestId = Annotated[int, Field(ge=0, lt=2**63)] | Annotated[str, Field(max_length=64)]
AgentName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
ToolName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
Token = Annotated[str, Field(min_length=1, max_length=256)]
KeyText = Annotated[str, Field(min_length=1, max_length=4096)]
OpId = Annotated[int, Field(ge=1, lt=2**63)]
Count = Annotated[int, Field(ge=0, lt=2**63)]
ExitStatus = Annotated[int, Field(ge=0, le=255)]
Role = Literal["agent", "monitor", "admin"]
NoticeKind = Literal["stale_read", "write_reordered", "write_dropped"]
OpAction = Literal["run", "skip", "served"]
AgentState = Literal["registered", "running", "waiting", "finished", "crashed", "retracted"]
OpState = Literal["held", "running", "done", "undone", "dropped"]
EventKind = Literal[
    "snapshot",          # a full Snapshot: first event of a stream, and after an overflow
    "agent_joined", "agent_left", "agent_finished", "agent_resumed", "agent_crashed",
    "op_begun", "op_ended", "op_undone", "op_redone", "op_dropped", "op_held",
    "notice", "shutdown",
    # added for the monitor (issue 7); a daemon that never sends them stays valid
    "read_served",       # a read served from an earlier version (order-filtered)
    "notice_handled",    # an agent acknowledged a notice (ignored it or repaired)
    "tool_added",        # a tool spec joined the library (ToolSmith); detail: its name
]
AgentPhase = Literal["thinking", "executing", "waiting", "repairing", "finished", "resumed", "crashed"]
Seconds = Annotated[float, Field(ge=0)]        # unix time, seconds
Money = Annotated[float, Field(ge=0)]          # US dollars


class WireModel(BaseModel):
    """Base of every message: unknown fields refused, no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ToolCall(WireModel):
    """A declared tool invocation. `params` is the one untyped payload on the wire:
    its schema belongs to the tool spec, which validates it."""

    tool: ToolName
    params: dict[str, JsonValue] = Field(default_factory=dict)


def _exactly_one(model: WireModel, first: str, second: str) -> None:
    if (getattr(model, first) is None) == (getattr(model, second) is None):
        raise ValueError(f"give exactly one of {first!r} and {second!r}")


# ---------------------------------------------------------------- requests


class Hello(WireModel):
    """First message of every connection. Agents name themselves and show their token;
    monitors and admins show the run's monitor/admin token and no name."""

    type: Literal["hello"] = "hello"
    id: RequestId | None = None
    protocol: int
    role: Role = "agent"
    agent: AgentName | None = None
    token: Token

    @model_validator(mode="after")
    def _name_iff_agent(self) -> "Hello":
        if (self.role == "agent") != (self.agent is not None):
            raise ValueError("role 'agent' needs an agent name; other roles take none")
        return self


class BeginOp(WireModel):
    """Ask to run one command line or one tool call; the reply says what to do."""

    type: Literal["begin_op"] = "begin_op"
    id: RequestId | None = None
    command: Annotated[str, Field(min_length=1)] | None = None
    tool: ToolCall | None = None
    cwd: Annotated[str, Field(min_length=1, max_length=4096)]

    @model_validator(mode="after")
    def _one_kind(self) -> "BeginOp":
        _exactly_one(self, "command", "tool")
        return self


class EndOp(WireModel):
    """Report that a granted op finished running."""

    type: Literal["end_op"] = "end_op"
    id: RequestId | None = None
    op: OpId
    exit_status: ExitStatus
    output_size: Count = 0


class Read(WireModel):
    """Order-filtered read: of one key, or of what a read-only tool call would see."""

    type: Literal["read"] = "read"
    id: RequestId | None = None
    key: KeyText | None = None
    tool: ToolCall | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Read":
        _exactly_one(self, "key", "tool")
        return self


class Inbox(WireModel):
    """Pending notices; `peek` leaves them undelivered."""

    type: Literal["inbox"] = "inbox"
    id: RequestId | None = None
    peek: bool = False


class Finish(WireModel):
    type: Literal["finish"] = "finish"
    id: RequestId | None = None


class Resume(WireModel):
    """Reopen a finished agent (itself; an admin may name any agent)."""

    type: Literal["resume"] = "resume"
    id: RequestId | None = None
    agent: AgentName | None = None


class Status(WireModel):
    type: Literal["status"] = "status"
    id: RequestId | None = None


class Subscribe(WireModel):
    """Turn this connection into an event stream (it still accepts requests)."""

    type: Literal["subscribe"] = "subscribe"
    id: RequestId | None = None


class Shutdown(WireModel):
    type: Literal["shutdown"] = "shutdown"
    id: RequestId | None = None


class Retract(WireModel):
    """Undo an agent's ops (compensate them; later writes are reordered on top)."""

    type: Literal["retract"] = "retract"
    id: RequestId | None = None
    agent: AgentName
    ops: Annotated[list[OpId], Field(min_length=1, max_length=100_000)] | Literal["all"]


class Usage(WireModel):
    """An agent's model usage since its last report (tokens from the API's usage field),
    so that monitors can show tokens and cost while the run goes on."""

    type: Literal["usage"] = "usage"
    id: RequestId | None = None
    tokens: Count = 0
    cost: Money = 0.0


Request = Annotated[
    Union[Hello, BeginOp, EndOp, Read, Inbox, Finish, Resume, Status, Subscribe, Shutdown, Retract,
          Usage],
    Field(discriminator="type"),
]

# ---------------------------------------------------------------- payloads


class Notice(WireModel):
    """Told to agent j: an earlier agent's write on `key` invalidates what j read."""

    id: OpId
    key: KeyText
    kind: NoticeKind
    by: AgentName                      # the earlier-ranked agent whose write it is
    op: OpId | None = None             # that agent's op, when there is one
    detail: str = ""                   # one human line: what happened
    diff: str | None = None            # the earlier agent's change, unified diff (text files)
    steps: list[OpId] = Field(default_factory=list)  # j's ops that read the stale version


class AgentInfo(WireModel):
    name: AgentName
    rank: Count
    state: AgentState
    ops: Count = 0
    pending_notices: Count = 0
    # Optional, for the monitor: a daemon fills in what it knows, the rest stays default.
    phase: AgentPhase | None = None    # finer than `state`: what the agent does right now
    current: str | None = None         # the command line or tool call running (or last run)
    steps: Count = 0                   # model turns so far
    tokens: Count = 0                  # prompt + completion tokens so far (API usage field)
    cost: Money = 0.0                  # spent so far
    handled_notices: Count = 0         # notices delivered and acknowledged
    started_at: Seconds | None = None  # when the agent joined
    since: Seconds | None = None       # when it entered its current phase (spinner time)
    finished_at: Seconds | None = None # when it last finished


class OpInfo(WireModel):
    op: OpId
    agent: AgentName
    state: OpState
    summary: str                       # the command line, or "tool(params)" shortened
    reads: list[KeyText] = Field(default_factory=list)
    writes: list[KeyText] = Field(default_factory=list)


class KeyContention(WireModel):
    """One contended key: who touched it and how often the protocol had to step in."""

    key: KeyText
    agents: list[AgentName] = Field(default_factory=list)  # rank order
    conflicts: Count = 0               # reorders, stale-read notices and drops on this key


class RunTotals(WireModel):
    """Run-wide counters since launch (the ops list in a Snapshot is only the recent ones)."""

    ops: Count = 0                     # ops applied
    undos: Count = 0
    redos: Count = 0
    drops: Count = 0                   # re-applies that failed and stay undone
    served: Count = 0                  # reads served from an earlier version
    notices: Count = 0                 # notices sent
    notices_handled: Count = 0
    tokens: Count = 0
    cost: Money = 0.0


class Snapshot(WireModel):
    """What a monitor draws: the run as of one moment."""

    cc: str = "mtpo"                   # the concurrency-control protocol in force
    agents: list[AgentInfo] = Field(default_factory=list)
    ops: list[OpInfo] = Field(default_factory=list)     # live and recent ops
    quiescent: bool = False
    # Optional, for the monitor:
    seq: Count | None = None           # seq of the last published event this includes
    started_at: Seconds | None = None  # when the run was launched
    totals: RunTotals | None = None    # None: the monitor sums what it can from agents/ops
    contention: list[KeyContention] = Field(default_factory=list)  # most contended first
    library_size: Count | None = None  # tools in the library (built-in + learned)


class Event(WireModel):
    """One item of a subscribe stream. `seq` rises by one per published event; a
    `snapshot` event carries the seq of the last event it already includes, and
    `dropped` counts events it replaces (the subscriber was too slow)."""

    type: Literal["event"] = "event"
    seq: Count = 0
    kind: EventKind
    agent: AgentName | None = None
    op: OpId | None = None
    key: KeyText | None = None
    detail: str = ""
    notice: Notice | None = None
    snapshot: Snapshot | None = None
    dropped: Count = 0
    at: Seconds | None = None          # when it was published (optional; for the monitor)


# ---------------------------------------------------------------- responses


class HelloReply(WireModel):
    type: Literal["hello_reply"] = "hello_reply"
    id: RequestId | None = None
    protocol: int = PROTOCOL_VERSION
    role: Role = "agent"
    agent: AgentName | None = None
    rank: Count | None = None
    session: Count = 0                 # the server's number for this connection


class OpGranted(WireModel):
    """`run`: run the op now, then send end_op. `skip`: do not run it (exit_status says
    what to report). `served`: do not run it; print `content` (a read served from the
    version log), report `exit_status`."""

    type: Literal["op_granted"] = "op_granted"
    id: RequestId | None = None
    op: OpId
    action: OpAction
    content: str | None = None
    exit_status: ExitStatus | None = None
    notices: list[Notice] = Field(default_factory=list)


class OpEnded(WireModel):
    type: Literal["op_ended"] = "op_ended"
    id: RequestId | None = None
    op: OpId
    pending_notices: Count = 0


class ReadReply(WireModel):
    type: Literal["read_reply"] = "read_reply"
    id: RequestId | None = None
    key: KeyText
    exists: bool
    content: str | None = None
    encoding: Literal["utf-8", "base64"] = "utf-8"
    version: Count | None = None


class InboxReply(WireModel):
    type: Literal["inbox_reply"] = "inbox_reply"
    id: RequestId | None = None
    notices: list[Notice] = Field(default_factory=list)


class FinishReply(WireModel):
    """`finished` is False when notices are pending; they come back in `notices`."""

    type: Literal["finish_reply"] = "finish_reply"
    id: RequestId | None = None
    finished: bool
    notices: list[Notice] = Field(default_factory=list)


class ResumeReply(WireModel):
    type: Literal["resume_reply"] = "resume_reply"
    id: RequestId | None = None
    agent: AgentName
    notices: list[Notice] = Field(default_factory=list)


class StatusReply(WireModel):
    type: Literal["status_reply"] = "status_reply"
    id: RequestId | None = None
    snapshot: Snapshot


class Subscribed(WireModel):
    """Events follow on this connection, starting with a `snapshot` event. At most
    `queue` events wait for a slow subscriber; past that it gets a fresh snapshot."""

    type: Literal["subscribed"] = "subscribed"
    id: RequestId | None = None
    queue: Count = 0


class ShutdownReply(WireModel):
    type: Literal["shutdown_reply"] = "shutdown_reply"
    id: RequestId | None = None


class RetractReply(WireModel):
    type: Literal["retract_reply"] = "retract_reply"
    id: RequestId | None = None
    agent: AgentName
    ops: list[OpId] = Field(default_factory=list)


class ErrorReply(WireModel):
    type: Literal["error"] = "error"
    id: RequestId | None = None
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    message: str


class UsageReply(WireModel):
    type: Literal["usage_reply"] = "usage_reply"
    id: RequestId | None = None


Response = Annotated[
    Union[HelloReply, OpGranted, OpEnded, ReadReply, InboxReply, FinishReply, ResumeReply,
          StatusReply, Subscribed, ShutdownReply, RetractReply, UsageReply, ErrorReply],
    Field(discriminator="type"),
]
Reply = Annotated[Union[Response, Event], Field(discriminator="type")]

REPLY_FOR: dict[type[WireModel], type[WireModel]] = {
    Hello: HelloReply, BeginOp: OpGranted, EndOp: OpEnded, Read: ReadReply,
    Inbox: InboxReply, Finish: FinishReply, Resume: ResumeReply, Status: StatusReply,
    Subscribe: Subscribed, Shutdown: ShutdownReply, Retract: RetractReply, Usage: UsageReply,
}
"""The one Response type that answers each Request (besides ErrorReply)."""

_AGENT_REQUESTS = frozenset({"begin_op", "end_op", "read", "inbox", "finish", "resume",
                             "status", "retract", "usage"})
ALLOWED: dict[str, frozenset[str]] = {
    "agent": _AGENT_REQUESTS,
    "monitor": frozenset({"status", "subscribe"}),
    "admin": frozenset({"status", "subscribe", "shutdown", "retract", "resume"}),
}
"""Which request types each role may send after hello. Names inside a request (an
`agent` field) must be the sender's own unless the sender is an admin."""

# ---------------------------------------------------------------- parsing

_REQUEST = TypeAdapter(Request)
_REPLY = TypeAdapter(Reply)
_JSON_ERRORS = frozenset({"json_invalid", "json_type"})
_TAG_ERRORS = frozenset({"union_tag_invalid"})


def parse_request(line: bytes, *, max_line: int = MAX_LINE) -> Request:
    """Turn one line (without or with its newline) into a Request, or raise WireError
    with code bad_json, bad_message, unknown_type or too_large. Nothing else escapes."""
    size = len(line) - line.endswith(b"\n")
    if size > max_line:
        raise WireError(f"request line of {size} bytes exceeds {max_line}", code=TOO_LARGE)
    try:
        return _REQUEST.validate_json(line)
    except ValidationError as exc:
        raise _wire_error(exc, BAD_MESSAGE) from None


def parse_reply(line: bytes) -> Any:
    """Client side: one server line into a Response or Event (WireError `bad_reply`)."""
    try:
        return _REPLY.validate_json(line)
    except ValidationError as exc:
        raise WireError(f"malformed reply: {_first_error(exc)}", code=BAD_REPLY) from None


def _wire_error(exc: ValidationError, fallback: str) -> WireError:
    kinds = {err["type"] for err in exc.errors(include_url=False)}
    code = BAD_JSON if kinds & _JSON_ERRORS else UNKNOWN_TYPE if kinds & _TAG_ERRORS else fallback
    return WireError(_first_error(exc), code=code)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in err["loc"])
    text = f"{where}: {err['msg']}" if where else err["msg"]
    more = exc.error_count() - 1
    return f"{text} (+{more} more)" if more else text


def guess_request_id(line: bytes) -> int | str | None:
    """The `id` of a line that failed to parse, if one can be read, so that the error
    reply can still be matched to its request. Never raises."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    rid = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(rid, bool) or not isinstance(rid, (int, str)):
        return None
    if isinstance(rid, int) and not 0 <= rid < 2**63 or isinstance(rid, str) and len(rid) > 64:
        return None
    return rid


def encode(message: WireModel) -> bytes:
    """One message as one line of UTF-8 JSON, newline included."""
    return message.__pydantic_serializer__.to_json(message) + b"\n"


def error_reply(code: str, message: str, request_id: int | str | None = None) -> ErrorReply:
    return ErrorReply(id=request_id, code=code, message=message)
