"""What the agent is told: the system prompt, observations, and notices.

The notice text is also read back by the ScriptedModel (`notice_keys`), so the renderer and
the parser live together here and stay in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from coagent_cli.agents.environment import Notice, Observation

SYSTEM_PROMPT = """\
You are {agent}, one of several agents working at the same time on one shared, live \
workspace. Rules of the shared workspace:
- Act only through your tools: `bash`, and the declared tools (prefer a declared tool when \
one fits: its effect can be undone and replayed exactly).
- Every write takes effect at once. Agents launched before you (lower rank) take \
precedence: the result must equal running the agents one after another in launch order.
- When an earlier agent changes something you already read, you get a NOTICE saying what \
changed and which of your steps read the old value. Re-judge: if your work does not depend \
on it, carry on; if it does, re-read what changed and repair only the affected steps.
- Do your own task only; never undo or redo other agents' work.
When your task is complete, reply with a short summary and no tool call."""

NOTICE_HEADER = "NOTICE from coagent: the shared workspace changed under you."
_NOTICE_LINE = re.compile(r"^Notice \d+: `(?P<key>[^`]+)` ", re.MULTILINE)

BASH_TOOL_DESCRIPTION = ("Run one bash command line in the workspace (the current directory) "
                         "and return its output and exit status.")
BASH_PARAMETERS = {"type": "object", "additionalProperties": False, "required": ["command"],
                   "properties": {"command": {"type": "string",
                                              "description": "The command line to run."}}}


@dataclass(frozen=True)
class StepRef:
    """One of this agent's earlier steps, named in a notice."""

    step: int   # the model turn that issued it
    label: str  # e.g. "bash: cat a.txt"


def system_prompt(agent: str) -> str:
    return SYSTEM_PROMPT.format(agent=agent)


def render_observation(obs: Observation, limit: int) -> str:
    output = obs.output
    if len(output) > limit:
        output = output[:limit] + f"\n[output truncated: {len(obs.output)} chars in all]"
    return f"exit status {obs.exit_status}\n{output}" if output else f"exit status {obs.exit_status}"


def render_notices(notices: list[Notice], steps: Mapping[int, StepRef], diff_limit: int) -> str:
    parts = [NOTICE_HEADER]
    for i, notice in enumerate(notices, 1):
        parts.append(_render_one(i, notice, steps, diff_limit))
    parts.append("Re-judge your work against these changes. If what you did depends on the "
                 "old value, re-read it and repair exactly the affected steps; otherwise "
                 "carry on. When done, reply with a short summary and no tool call.")
    return "\n\n".join(parts)


def _render_one(i: int, n: Notice, steps: Mapping[int, StepRef], diff_limit: int) -> str:
    lines = [f"Notice {i}: `{n.key}` {_what(n)}"]
    if n.detail:
        lines.append(f"  Detail: {n.detail}")
    read = [steps[s] for s in n.steps if s in steps]
    if read:
        named = "; ".join(f"step {r.step} ({r.label})" for r in read)
        lines.append(f"  Your steps that read the old value: {named}")
    if n.diff:
        lines.append("  What the earlier agent changed:\n" + _fenced(n.diff, diff_limit))
    return "\n".join(lines)


def _what(n: Notice) -> str:
    if n.kind == "write_dropped":
        return (f"-- your write could not be re-applied on top of earlier agent `{n.by}`'s "
                "change and was dropped; redo it on the current content.")
    if n.kind == "write_reordered":
        return (f"-- earlier agent `{n.by}` wrote it after you; your write was re-applied "
                "on top of theirs.")
    return f"was changed by earlier agent `{n.by}` after you read it."


def _fenced(diff: str, limit: int) -> str:
    if len(diff) > limit:
        diff = diff[:limit] + f"\n[diff truncated: {len(diff)} chars in all]"
    return f"```diff\n{diff.rstrip()}\n```"


def notice_keys(text: str) -> list[str]:
    """The keys named in a notice message (empty when text is not one)."""
    if not text.startswith(NOTICE_HEADER):
        return []
    return [m.group("key") for m in _NOTICE_LINE.finditer(text)]
