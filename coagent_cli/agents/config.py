"""Typed configuration of one agent: its model, its limits, retries, prices, its script.

Everything here is plain data (pydantic, unknown fields refused), so a plan file or a YAML
default can be validated in one place and flags override single fields. A field's meaning
is written next to it, once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coagent_cli.errors import UsageError

SCRIPTED = "scripted"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """US dollars per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    # Prompt tokens the provider served from its cache; None: billed like `input`.
    cached_input: float | None = Field(default=None, ge=0)


class ToolStep(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class ScriptStep(_Strict):
    """One step of a scripted agent: exactly one of think, bash, tool."""

    think: float | None = Field(default=None, ge=0)   # seconds of (simulated) inference
    bash: str | None = None                           # a command line for the bash tool
    tool: ToolStep | None = None                      # a declared tool call
    # Workspace paths this step's effect was derived from: after a notice on one of them,
    # the step is redone. When no step of a script says, the repair re-runs everything from
    # the first step that touched the notice's key.
    after_read: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _one_path_is_a_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("after_read"), str):
            return {**data, "after_read": [data["after_read"]]}
        return data

    @model_validator(mode="after")
    def _exactly_one_action(self) -> "ScriptStep":
        given = [n for n in ("think", "bash", "tool") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"a step needs exactly one of think, bash, tool (got {given})")
        return self


class Script(_Strict):
    steps: list[ScriptStep]
    # Seconds of think time before a repair (re-judging a notice is inference too).
    repair_think: float = Field(default=0.0, ge=0)
    final: str = "done"  # what the model says when its script is played out

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        return {"steps": data} if isinstance(data, list) else data


class ModelConfig(_Strict):
    # "scripted" (offline, plays `script`), or a model name at an OpenAI-compatible endpoint.
    name: str = SCRIPTED
    base_url: str | None = None          # None: the SDK's default (or OPENAI_BASE_URL)
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the key
    # None: the request does not mention it (some servers refuse the field altogether).
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    request_timeout: float = Field(default=120.0, gt=0)  # seconds per HTTP request
    script: Script | None = None         # the scripted model's play


class RetryConfig(_Strict):
    """Exponential backoff on 429, 5xx and timeouts: backoff * 2**attempt, capped."""

    retries: int = Field(default=4, ge=0)
    backoff: float = Field(default=1.0, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)

    def delay(self, attempt: int) -> float:
        return min(self.backoff * (2 ** attempt), self.backoff_max)


class AgentConfig(_Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    max_steps: int = Field(default=50, ge=1)          # model turns, run and resumes together
    max_tokens: int | None = Field(default=None, ge=1)  # prompt + completion, all turns
    wall_time: float | None = Field(default=None, gt=0)  # seconds spent inside run/resume
    retry: RetryConfig = Field(default_factory=RetryConfig)
    prices: dict[str, Price] = Field(default_factory=dict)  # model name -> price
    observation_limit: int = Field(default=10_000, ge=100)  # chars of tool output shown
    notice_diff_limit: int = Field(default=4_000, ge=100)   # chars of a notice's diff shown

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> "AgentConfig":
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise UsageError(f"invalid agent config: {e}", code="agent_config") from None

    @classmethod
    def load(cls, path: str | Path) -> "AgentConfig":
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise UsageError(f"cannot read agent config {path}: {e}", code="agent_config") from e
        return cls.from_mapping(data)

    def overridden(self, **model_fields: Any) -> "AgentConfig":
        """A copy with some ModelConfig fields replaced (None values are ignored: unset flags)."""
        given = {k: v for k, v in model_fields.items() if v is not None}
        model = ModelConfig.model_validate({**self.model.model_dump(), **given})
        return self.model_copy(update={"model": model})
