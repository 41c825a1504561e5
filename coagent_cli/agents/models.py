"""The Model protocol, the OpenAI-compatible model, and choosing a model by name.

A model answers a conversation (OpenAI chat messages, plain dicts: that format IS the
boundary every OpenAI-compatible server speaks) with a ModelReply: some text, zero or more
tool calls, and the token usage. `make_model` picks the implementation by name: "scripted"
is the offline ScriptedModel (scripted.py), anything else is a model at an endpoint.

openai's exceptions are translated here, at the edge, into:

    CoagentError
    ├── UsageError
    │   └── MissingApiKey          the key's environment variable is unset or empty
    └── ModelError (RuntimeError)  the endpoint did not give an answer we can use
        ├── EndpointUnreachable    no connection on the first request (wrong URL, down)
        ├── ModelUnavailable       429 / 5xx / timeouts / lost connection, retries exhausted
        └── ModelRequestRefused    any other refusal (401 bad key, 400, 404 unknown model)

Retries are ours, not the SDK's (it is built with max_retries=0), so the backoff sleeps
through the injected Clock and tests never sleep.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import openai

from coagent_cli.agents.clock import Clock, SystemClock
from coagent_cli.agents.config import SCRIPTED, ModelConfig, Price, RetryConfig
from coagent_cli.agents.environment import ToolSchema
from coagent_cli.errors import CoagentError, UsageError

Message = dict[str, Any]  # one OpenAI chat message


class ModelError(CoagentError, RuntimeError):
    code = "model"


class EndpointUnreachable(ModelError):
    code = "endpoint_unreachable"


class ModelUnavailable(ModelError):
    code = "model_unavailable"


class ModelRequestRefused(ModelError):
    code = "model_refused"


class MissingApiKey(UsageError):
    code = "missing_api_key"


@dataclass(frozen=True)
class Usage:
    """Tokens as the API's `usage` field reports them; cached is part of prompt."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.prompt + other.prompt, self.completion + other.completion,
                     self.cached + other.cached)

    def cost(self, price: Price | None) -> float | None:
        if price is None:
            return None
        cached_rate = price.input if price.cached_input is None else price.cached_input
        fresh = self.prompt - self.cached
        return (fresh * price.input + self.cached * cached_rate
                + self.completion * price.output) / 1_000_000


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (it may not parse)


@dataclass(frozen=True)
class ModelReply:
    text: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)

    def message(self) -> Message:
        """The assistant message to append to the conversation."""
        msg: Message = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            msg["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in self.tool_calls]
        return msg


class Model(Protocol):
    name: str

    def query(self, messages: list[Message], tools: list[ToolSchema]) -> ModelReply: ...

    def close(self) -> None: ...


def make_model(config: ModelConfig, *, clock: Clock | None = None,
               retry: RetryConfig | None = None,
               environ: Mapping[str, str] | None = None) -> Model:
    """The model named by config.name: "scripted", or one at an OpenAI-compatible endpoint."""
    clock = clock or SystemClock()
    if config.name == SCRIPTED:
        from coagent_cli.agents.scripted import ScriptedModel  # scripted imports this module

        if config.script is None:
            raise UsageError("the scripted model needs a script", code="agent_config")
        return ScriptedModel(config.script, clock=clock)
    return OpenAIModel(config, clock=clock, retry=retry, environ=environ)


def api_key(config: ModelConfig, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    key = env.get(config.api_key_env, "").strip()
    if not key:
        raise MissingApiKey(f"no API key: the environment variable {config.api_key_env} is "
                            "unset or empty (set it, or name another variable in the model's "
                            "api_key_env; for a local server that needs no key, any value "
                            "will do)")
    return key


class OpenAIModel:
    """Chat completions with function tools, on any OpenAI-compatible endpoint."""

    def __init__(self, config: ModelConfig, *, clock: Clock | None = None,
                 retry: RetryConfig | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock or SystemClock()
        self.retry = retry or RetryConfig()
        self.answered = 0  # successful requests so far
        self._client = _client(config, api_key(config, environ))

    def query(self, messages: list[Message], tools: list[ToolSchema]) -> ModelReply:
        request = self._request(messages, tools)
        attempt = 0
        while True:
            try:
                response = self._client.chat.completions.create(**request)
            except openai.OpenAIError as e:
                error = self._translate(e)
                if not _retryable(error) or attempt >= self.retry.retries:
                    raise error from None
                self.clock.sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            self.answered += 1
            return _reply(response)

    def close(self) -> None:
        self._client.close()

    def _request(self, messages: list[Message], tools: list[ToolSchema]) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.name, "messages": messages}
        if tools:
            request["tools"] = [t.to_openai() for t in tools]
            if self.config.parallel_tool_calls is not None:
                request["parallel_tool_calls"] = self.config.parallel_tool_calls
        if self.config.temperature is not None:
            request["temperature"] = self.config.temperature
        return request

    def _translate(self, e: openai.OpenAIError) -> ModelError:
        where = self._client.base_url
        if isinstance(e, openai.APITimeoutError):
            return ModelUnavailable(f"{where}: request timed out "
                                    f"after {self.config.request_timeout:g}s")
        if isinstance(e, openai.APIConnectionError):
            # Unreachable on first contact is a wrong URL or a server that is down: fail
            # fast. A connection lost mid-run is worth retrying.
            cls = EndpointUnreachable if self.answered == 0 else ModelUnavailable
            return cls(f"cannot reach the model endpoint {where}: {_cause(e)}")
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            text = f"{where}: HTTP {status} from the model endpoint: {_api_message(e)}"
            if status == 429 or status >= 500:
                return ModelUnavailable(text)
            if status in (401, 403):
                text += f" (check the key in {self.config.api_key_env})"
            return ModelRequestRefused(text)
        return ModelError(f"{where}: {type(e).__name__}: {e}")


def _client(config: ModelConfig, key: str) -> openai.OpenAI:
    try:
        return openai.OpenAI(api_key=key, base_url=config.base_url, max_retries=0,
                             timeout=config.request_timeout)
    except openai.OpenAIError as e:
        raise ModelError(f"cannot set up the OpenAI client: {e}") from None


def _retryable(error: ModelError) -> bool:
    return isinstance(error, ModelUnavailable)


def _cause(e: BaseException) -> str:
    inner = e.__cause__ or e.__context__
    return f"{e} ({inner})" if inner is not None else str(e)


def _api_message(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return e.message


def _reply(response: Any) -> ModelReply:
    if not getattr(response, "choices", None):
        raise ModelError("the model endpoint answered without any choice")
    message = response.choices[0].message
    calls = [ToolCall(c.id or f"call_{uuid.uuid4().hex[:12]}", c.function.name,
                      c.function.arguments or "{}")
             for c in (message.tool_calls or []) if getattr(c, "function", None)]
    return ModelReply(message.content, calls, _usage(response.usage))


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0, cached or 0)
