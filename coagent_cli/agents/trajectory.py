"""An agent's trajectory: every message, tool call, result, notice and usage, as JSON lines.

One file per agent, `<directory>/<agent>.jsonl` (a run keeps its agents' files under
`.coagent/runs/<run-id>/`). Each line is one event with its clock time. The file is opened
for each line (an agent writes a few lines a step), so nothing stays open and a crashed run
still leaves everything up to the crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coagent_cli.errors import ExecutionError


class Trajectory:
    def __init__(self, directory: str | Path | None, agent: str) -> None:
        self.agent = agent
        self.path = Path(directory) / f"{agent}.jsonl" if directory is not None else None
        self.events: list[dict[str, Any]] = []  # also kept in memory, for reports and tests

    def record(self, event: str, time: float, **fields: Any) -> None:
        line = {"event": event, "agent": self.agent, "time": round(time, 6), **fields}
        self.events.append(line)
        if self.path is not None:
            self._append(json.dumps(line, default=str))

    def carry_over(self, events: list[dict[str, Any]]) -> None:
        """Start with an earlier trajectory's events (a run continued after a crash)."""
        self.events.extend(events)
        if self.path is not None and events:
            self._append("\n".join(json.dumps(e, default=str) for e in events))

    def _append(self, text: str) -> None:
        assert self.path is not None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(text + "\n")
        except OSError as e:
            raise ExecutionError(f"cannot write the trajectory {self.path}: {e}") from e


def read_trajectory(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
