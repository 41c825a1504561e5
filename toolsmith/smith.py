"""The ToolSmith: mine a run's journal, generalise recurring raw commands into tools,
validate each in a scratch copy, register the good ones in the workspace's library.

    ToolSmith(workspace).once(dry_run=False) -> [Outcome, ...]
    ToolSmith(workspace).watch(every=5.0, rounds=N, stop=...)   # while the run goes on

Registering writes `<workspace>/.coagent/tools/<name>.yaml` (the workspace layer of the
library, atomically). A running daemon watches that directory: the next command line
sees the tool, the classifier lifts matching raw lines onto it (so they get the tool's
footprint instead of `*`), built-in agents are offered it on their next step, and a
`tool_added` event goes to monitors. Privileged: it writes tools every agent will run.

A candidate is registered only if `coagent tools check` holds for it on the observed
params (forward then inverse restores the scratch copy byte for byte; everything it
wrote lies inside its declared writes; hostile values stay inert). Lines an existing
tool already lifts are not mined again.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

from coagent_cli.errors import CoagentError, UsageError
from coagent_cli.journal import Journal
from coagent_cli.tools.check import check_tool
from coagent_cli.tools.library import ToolLibrary, workspace_tools_dir
from coagent_cli.tools.matcher import ToolMatcher
from coagent_cli.tools.spec import ToolSpec
from toolsmith.generalise import MIN_COUNT, Candidate, Sample, generalise
from toolsmith.mine import samples_from_journal

__all__ = ["Outcome", "ToolSmith"]

Status = Literal["registered", "validated", "rejected", "not_generalised"]
CHECK_SAMPLES = 3  # observed params a candidate is checked on


@dataclass
class Outcome:
    name: str
    status: Status
    lines: list[str]
    detail: str = ""             # why rejected / not generalised, or where registered
    spec: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "lines": self.lines, "detail": self.detail,
                "spec": self.spec}


class ToolSmith:
    def __init__(self, workspace: Path, *, min_count: int = MIN_COUNT, user_dir: Path | None = None) -> None:
        self.workspace = Path(workspace).resolve()
        self.min_count = min_count
        self.user_dir = user_dir
        self.journal_path = self.workspace / ".coagent" / "journal.db"
        self._decided: set[tuple[str, ...]] = set()  # sample groups already judged (watch)

    def once(self, *, dry_run: bool = False, progress: Callable[[str], None] | None = None) -> list[Outcome]:
        """One round: mine, generalise, check, register (unless dry_run)."""
        if not self.journal_path.exists():
            raise UsageError(f"no run journal in {self.journal_path.parent}", code="no_journal")
        library = ToolLibrary.for_workspace(self.workspace, user_dir=self.user_dir)
        with Journal.open(self.journal_path) as journal:
            samples = self._unlifted(samples_from_journal(journal, self.workspace), library)
        outcomes = []
        for cand in generalise(samples, min_count=self.min_count, taken=[t.name for t in library.tools()]):
            group = tuple(sorted(cand.lines))
            if group in self._decided:
                continue
            if progress is not None:
                progress(cand.name)
            outcome = self._forge(cand, dry_run)
            if outcome.status != "rejected" or not dry_run:
                self._decided.add(group)
            outcomes.append(outcome)
        return outcomes

    def watch(self, *, every: float, rounds: int, stop: threading.Event | None = None,
              on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        """Rounds `every` seconds apart (at most `rounds`, or until `stop` is set)."""
        stop = stop or threading.Event()
        seen: list[Outcome] = []
        for _ in range(rounds):
            try:
                found = self.once()
            except UsageError:
                found = []  # no journal yet: the run has not begun
            for outcome in found:
                seen.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
            if stop.wait(every):
                break
        return seen

    # ---------------------------------------------------------------- one candidate

    def _forge(self, cand: Candidate, dry_run: bool) -> Outcome:
        if cand.spec is None:
            return Outcome(cand.name, "not_generalised", cand.lines, cand.problem or "")
        try:
            spec = ToolSpec.model_validate(cand.spec)
        except (ValueError, CoagentError) as exc:
            return Outcome(cand.name, "rejected", cand.lines, f"the spec does not validate: {exc}", cand.spec)
        report = check_tool(spec, self.workspace, cand.params[:CHECK_SAMPLES])
        if not report.ok:
            return Outcome(cand.name, "rejected", cand.lines, "; ".join(report.problems)[:2000], cand.spec)
        if dry_run:
            return Outcome(cand.name, "validated", cand.lines, "checked, not registered (dry run)", cand.spec)
        path = self._register(cand.spec)
        return Outcome(cand.name, "registered", cand.lines, str(path), cand.spec)

    def _register(self, spec: dict[str, Any]) -> Path:
        folder = workspace_tools_dir(self.workspace)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{spec['name']}.yaml"
        fd, tmp = tempfile.mkstemp(prefix=".toolsmith-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("# Written by the coagent ToolSmith; edit or delete freely.\n")
            yaml.safe_dump(spec, f, sort_keys=False, allow_unicode=True, width=100)
        os.replace(tmp, target)
        return target

    def _unlifted(self, samples: list[Sample], library: ToolLibrary) -> list[Sample]:
        """Samples no tool of the library lifts now (a tool written since they ran)."""
        matcher = ToolMatcher(library)
        return [s for s in samples if matcher.match(list(s.argv), self.workspace, self.workspace) is None]
