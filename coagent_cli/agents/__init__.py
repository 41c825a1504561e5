"""Agents: the loop, the models it talks to, the environment it acts on.

    loop.py         Agent: run() / resume(notices), limits, notices in the conversation
    models.py       Model protocol, OpenAIModel (any OpenAI-compatible endpoint), make_model,
                    the model errors (openai's translated at this edge)
    scripted.py     ScriptedModel ("scripted"): an offline script with a repair rule
    environment.py  Environment protocol, Observation/ToolSchema/Notice, LocalEnvironment
    prompts.py      the system prompt, observation and notice rendering
    config.py       AgentConfig, ModelConfig, Script, RetryConfig, Price
    clock.py        Clock protocol, SystemClock, FakeClock
    trajectory.py   per-agent JSON-lines trajectory
"""

from importlib import import_module
from typing import Any

# Names resolve on first use: importing coagent_cli.agents (for its config, say) must not
# load the openai SDK, which every `coagent exec` would otherwise pay for at start-up.
_WHERE = {
    "Clock": "clock", "FakeClock": "clock", "SystemClock": "clock",
    "AgentConfig": "config", "ModelConfig": "config", "Price": "config", "RetryConfig": "config",
    "Script": "config",
    "Environment": "environment", "LocalEnvironment": "environment", "Notice": "environment",
    "Observation": "environment", "ToolSchema": "environment",
    "Agent": "loop", "AgentResult": "loop",
    "EndpointUnreachable": "models", "MissingApiKey": "models", "Model": "models",
    "ModelError": "models", "ModelReply": "models", "ModelRequestRefused": "models",
    "ModelUnavailable": "models", "OpenAIModel": "models", "ToolCall": "models", "Usage": "models",
    "make_model": "models",
    "ScriptedModel": "scripted",
    "Trajectory": "trajectory", "read_trajectory": "trajectory",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'coagent_cli.agents' has no attribute {name!r}")
    return getattr(import_module(f"coagent_cli.agents.{module}"), name)
