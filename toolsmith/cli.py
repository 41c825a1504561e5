"""`coagent toolsmith`: mine the workspace's run journal for recurring raw commands and
turn them into declared tools (see toolsmith.smith).

Prints one line per candidate (registered, validated, rejected with the reason, or not
generalisable); `--json` prints the outcomes as JSON. `--watch SECONDS` keeps mining that
often while the run goes on (up to `--rounds`). Exit 0 unless the input is bad (2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from coagent_cli.cliutil import clean_errors
from toolsmith.smith import Outcome, ToolSmith

_MARK = {"registered": "+", "validated": "~", "rejected": "x", "not_generalised": "-"}


@clean_errors
def toolsmith_cmd(
    workspace: Path = typer.Option(Path("."), "--workspace", "-w", help="The run's workspace."),
    min_count: int = typer.Option(3, "--min-count", min=2, help="Distinct lines of one shape before a tool is made."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check candidates, register nothing."),
    as_json: bool = typer.Option(False, "--json", help="The outcomes as one JSON list."),
    watch: Optional[float] = typer.Option(None, "--watch", min=0.1, help="Mine again every SECONDS."),
    rounds: int = typer.Option(120, "--rounds", min=1, help="With --watch: at most this many rounds."),
) -> None:
    """Turn recurring raw commands of the run into declared tools (checked, then registered
    in the workspace's library, where the running daemon picks them up)."""
    smith = ToolSmith(workspace, min_count=min_count)
    if watch is not None:
        outcomes = smith.watch(every=watch, rounds=rounds, on_outcome=None if as_json else _say)
    else:
        outcomes = smith.once(dry_run=dry_run, progress=None if as_json else _checking)
        if not as_json:
            for outcome in outcomes:
                _say(outcome)
    if as_json:
        typer.echo(json.dumps([o.to_json() for o in outcomes], indent=2))
    elif not outcomes:
        typer.echo(f"no recurring raw commands yet (a tool needs {min_count} distinct lines of one shape)")


def _checking(name: str) -> None:
    typer.echo(f"checking {name} ...", err=True)


def _say(outcome: Outcome) -> None:
    sample = outcome.lines[0] if outcome.lines else ""
    typer.echo(f"{_MARK[outcome.status]} {outcome.name}: {outcome.status.replace('_', ' ')} "
               f"({len(outcome.lines)} lines like `{sample}`)" + (f": {outcome.detail}" if outcome.detail else ""))
