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

from coagent_cli.agents.clock import Clock, FakeClock, SystemClock
from coagent_cli.agents.config import AgentConfig, ModelConfig, Price, RetryConfig, Script
from coagent_cli.agents.environment import (Environment, LocalEnvironment, Notice, Observation,
                                            ToolSchema)
from coagent_cli.agents.loop import Agent, AgentResult
from coagent_cli.agents.models import (EndpointUnreachable, MissingApiKey, Model, ModelError,
                                       ModelReply, ModelRequestRefused, ModelUnavailable,
                                       OpenAIModel, ToolCall, Usage, make_model)
from coagent_cli.agents.scripted import ScriptedModel
from coagent_cli.agents.trajectory import Trajectory, read_trajectory

__all__ = ["Agent", "AgentConfig", "AgentResult", "Clock", "EndpointUnreachable",
           "Environment", "FakeClock", "LocalEnvironment", "MissingApiKey", "Model",
           "ModelConfig", "ModelError", "ModelReply", "ModelRequestRefused", "ModelUnavailable",
           "Notice", "Observation", "OpenAIModel", "Price", "RetryConfig", "Script",
           "ScriptedModel", "SystemClock", "ToolCall", "ToolSchema", "Trajectory", "Usage",
           "make_model", "read_trajectory"]
