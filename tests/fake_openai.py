"""A fake OpenAI-compatible server: a real HTTP server on 127.0.0.1 (ephemeral port, its own
thread) that speaks enough of POST /v1/chat/completions for the openai SDK.

It answers from a queue of scripted items: a `Reply` (text and/or tool calls, and a usage
field) or a `Failure` (an HTTP status with an OpenAI-style error body). When the queue is
empty it answers `default` (a plain "done" unless told otherwise). Every request body it
receives is kept, parsed, in `requests`, so tests assert on what the client really sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union

PATH = "/v1/chat/completions"
Item = Union["Reply", "Failure", "Stall"]


@dataclass(frozen=True)
class Reply:
    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    usage: tuple[int, int, int | None] = (10, 5, None)  # prompt, completion, cached

    def body(self, model: str, n: int) -> dict[str, Any]:
        calls = [{"id": f"call_{n}_{i}", "type": "function",
                  "function": {"name": name, "arguments": json.dumps(args)}}
                 for i, (name, args) in enumerate(self.tool_calls)]
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if calls:
            message["tool_calls"] = calls
        prompt, completion, cached = self.usage
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion}
        if cached is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1_700_000_000,
                "model": model, "usage": usage,
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if calls else "stop"}]}


@dataclass(frozen=True)
class Failure:
    status: int
    message: str = "scripted failure"


@dataclass(frozen=True)
class Stall:
    """Answer nothing for `seconds` (the client times out), then a 504 no one reads."""

    seconds: float


def call(name: str, **args: Any) -> tuple[str, dict[str, Any]]:
    return (name, args)


class FakeOpenAI:
    def __init__(self, *items: Item, default: Reply | None = None) -> None:
        self.queue: deque[Item] = deque(items)
        self.default = default or Reply("done")
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def add(self, *items: Item) -> None:
        with self._lock:
            self.queue.extend(items)

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            n = len(self.requests)
            item = self.queue.popleft() if self.queue else self.default
        if isinstance(item, Stall):
            time.sleep(item.seconds)
            return 504, {"error": {"message": "stalled"}}
        if isinstance(item, Failure):
            return item.status, {"error": {"message": item.message, "type": "fake",
                                           "param": None, "code": str(item.status)}}
        return 200, item.body(str(body.get("model", "fake")), n)


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path != PATH:
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self._send(400, {"error": {"message": "body is not JSON"}})
                return
            self._send(*fake._answer(body, {k.lower(): v for k, v in self.headers.items()}))

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a Stall); nothing left to tell it

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            return None

    return Handler
