"""A run plan: which agents, in which rank order, on which workspace, under which protocol.

    workspace: .          # optional; relative to the plan file; --workspace overrides
    cc: mtpo              # mtpo | 2pl | occ | serial | none; --cc overrides
    model: scripted       # default model of built-in agents; --model overrides
    base_url: null        # default OpenAI-compatible endpoint; --base-url overrides
    limits: {max_steps: 50, max_tokens: null, wall_time: null}
    toolsmith: {every: 5, min_count: 3}   # optional: forge tools from recurring raw commands
    agents:               # rank order = the order listed
      - name: alice
        command: python agents/alice.py      # an external agent (any CLI)
      - name: bob
        task: "Add a --verbose flag"         # a built-in agent (LLM or scripted)
        model: scripted                      # optional: overrides the default
        script: [{bash: "..."}, {think: 2}]  # the scripted model's play

Everything is checked here, once: unknown fields are refused, and an error names the
file and the field in one line (a UsageError, never a traceback).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from coagent_cli.agents.config import SCRIPTED, AgentConfig, ModelConfig, Script
from coagent_cli.core import CONTROLLERS
from coagent_cli.errors import UsageError

__all__ = ["Plan", "BuiltinAgent", "ExternalAgent", "Limits", "ToolsmithConfig", "load_plan",
           "plan_from_tasks", "parse_plan"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # as the daemon's wire accepts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """Per built-in agent; see AgentConfig for each field's meaning."""

    max_steps: int = Field(default=50, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    wall_time: float | None = Field(default=None, gt=0)


class ToolsmithConfig(_Strict):
    """The ToolSmith alongside the run (toolsmith.smith): mines the journal every `every`
    seconds and registers checked tools for raw commands seen `min_count` times."""

    every: float = Field(default=5.0, gt=0)
    min_count: int = Field(default=3, ge=2)


class ExternalAgent(_Strict):
    """Any CLI: launched with cwd = workspace and the COAGENT_* environment."""

    name: str = Field(pattern=NAME_PATTERN)
    command: str = Field(min_length=1)   # a shell command line (run by /bin/sh)


class BuiltinAgent(_Strict):
    """The built-in agent loop, on an OpenAI-compatible model or the scripted one."""

    name: str = Field(pattern=NAME_PATTERN)
    task: str = Field(min_length=1)
    model: str | None = None             # None: the plan's default model
    base_url: str | None = None          # None: the plan's default endpoint
    api_key_env: str | None = None       # None: the plan's default (OPENAI_API_KEY)
    script: Script | None = None         # the scripted model's play


def _kind(item: Any) -> str:
    has_command = isinstance(item, dict) and "command" in item or isinstance(item, ExternalAgent)
    return "external" if has_command else "builtin"


# The kind is picked by its key (`command:` or not), so an error speaks of one kind only.
AgentEntry = Annotated[Union[Annotated[ExternalAgent, Tag("external")],
                             Annotated[BuiltinAgent, Tag("builtin")]], Discriminator(_kind)]


class Plan(_Strict):
    workspace: Path | None = None        # None: the current directory
    cc: str = "mtpo"
    model: str = SCRIPTED                # default model of built-in agents
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    limits: Limits = Field(default_factory=Limits)
    toolsmith: ToolsmithConfig | None = None  # None: no ToolSmith during the run
    agents: list[AgentEntry] = Field(min_length=1)

    @field_validator("cc")
    @classmethod
    def _known_cc(cls, value: str) -> str:
        if value not in CONTROLLERS:
            raise ValueError(f"unknown protocol {value!r}; choose one of {', '.join(CONTROLLERS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Plan":
        names = [a.name for a in self.agents]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"agent names must be distinct ({', '.join(twice)} appears twice)")
        for i, agent in enumerate(self.agents):
            if isinstance(agent, BuiltinAgent) and self.model_of(agent) == SCRIPTED and agent.script is None:
                raise ValueError(f"agents.{i} ({agent.name}): the scripted model needs a `script`")
        return self

    def model_of(self, agent: BuiltinAgent) -> str:
        return agent.model or self.model

    def agent_config(self, agent: BuiltinAgent) -> AgentConfig:
        """The AgentConfig of one built-in agent: its own fields over the plan's defaults."""
        model = ModelConfig(name=self.model_of(agent), base_url=agent.base_url or self.base_url,
                            api_key_env=agent.api_key_env or self.api_key_env, script=agent.script)
        return AgentConfig(model=model, **self.limits.model_dump())

    def overridden(self, **fields: Any) -> "Plan":
        """A copy with some top-level fields replaced (None values: flags not given)."""
        given = {k: v for k, v in fields.items() if v is not None}
        return parse_plan({**self.model_dump(exclude_none=True), **given}, "the command line")


def parse_plan(data: Any, source: str) -> Plan:
    """Validate plan data; a UsageError `bad_plan` naming `source` and the field."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a plan is a mapping with at least `agents:`", code="bad_plan")
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{source}: {_first_error(exc)}", code="bad_plan") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"] if not _is_internal(p))
    message = re.sub(r"^(Value|Assertion) error, ", "", err["msg"]).replace("\n", " ")
    more = exc.error_count() - 1
    text = f"{where}: {message}" if where else message
    return text + (f" (and {more} more)" if more else "")


def _is_internal(part: Any) -> bool:
    # pydantic puts the model name of a nested validation in the location
    return isinstance(part, str) and part in ("external", "builtin")


def load_plan(path: str | Path) -> Plan:
    """Read PLAN.yaml; a relative `workspace` is taken relative to the plan's folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the plan: {exc.strerror or exc}", code="bad_plan") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}",
                         code="bad_plan") from None
    plan = parse_plan(data, str(path))
    if plan.workspace is not None and not plan.workspace.is_absolute():
        plan = plan.model_copy(update={"workspace": (path.parent / plan.workspace).resolve()})
    return plan


def plan_from_tasks(tasks: list[str], *, model: str | None = None) -> Plan:
    """`--task T --task U`: built-in agents agent1, agent2, ... in the order given."""
    agents = [{"name": f"agent{i}", "task": t} for i, t in enumerate(tasks, 1)]
    data: dict[str, Any] = {"agents": agents}
    if model is not None:
        data["model"] = model
    return parse_plan(data, "--task")
