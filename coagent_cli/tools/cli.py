"""`coagent tools ...`: list, show, check and add declared tools.

Bad input (an unknown tool, a spec that does not load, a missing file) prints one line
`error: ...` and exits 2; a check that finds problems exits 1.

A check runs every sample of a tool in scratch copies of the workspace, so checking the
whole library takes a while: each tool's result is printed as soon as it is known, and on
a terminal a transient progress bar shows which tool is being checked (in a log there is
no bar, only the result lines, so no control characters).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from coagent_cli.cliutil import clean_errors
from coagent_cli.errors import UsageError
from coagent_cli.tools.check import CheckReport, check_tool
from coagent_cli.tools.library import ToolEntry, ToolLibrary, workspace_tools_dir
from coagent_cli.tools.loader import load_spec_file
from coagent_cli.tools.spec import ToolSpec

tools_app = typer.Typer(no_args_is_help=True, add_completion=False,
                        help="Declared tools: list, show, check and add.")

WorkspaceOpt = typer.Option(Path("."), "--workspace", "-w", help="Workspace directory.",
                            show_default="current directory")


def _library(workspace: Path) -> ToolLibrary:
    if not workspace.is_dir():
        raise UsageError(f"workspace is not a directory: {workspace}")
    library = ToolLibrary.for_workspace(workspace.resolve())
    for error in library.errors:
        typer.echo(f"warning: skipped a broken spec: {error}", err=True)
    return library


@tools_app.command("list")
@clean_errors
def list_tools(workspace: Path = WorkspaceOpt,
               as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List every tool definition; overridden ones are marked."""
    entries = _library(workspace).entries()
    if as_json:
        typer.echo(json.dumps([_entry_json(e) for e in entries], indent=2))
        return
    for e in sorted(entries, key=lambda e: (e.name, not e.active)):
        mark = f"  (overridden by {e.overridden_by})" if e.overridden_by else ""
        typer.echo(f"{e.name:<22} {e.layer:<9} {e.source}{mark}")


def _entry_json(e: ToolEntry) -> dict[str, Any]:
    return {"name": e.name, "description": e.spec.description, "layer": e.layer,
            "source": str(e.source), "active": e.active,
            "overridden_by": str(e.overridden_by) if e.overridden_by else None,
            "irreversible": e.spec.is_irreversible}


@tools_app.command("show")
@clean_errors
def show_tool(name: str, workspace: Path = WorkspaceOpt) -> None:
    """Show one tool: its spec, where it comes from, and what it overrides."""
    library = _library(workspace)
    active = library.entry(name)
    typer.echo(f"# {name}: {active.layer} tool from {active.source}")
    for earlier in library.history(name)[:-1]:
        typer.echo(f"# overrides the {earlier.layer} definition in {earlier.source}")
    if active.spec.inverse != "none" and not active.spec.inverse_exact:
        typer.echo("# inverse is NOT exact: " + " ".join(active.spec.inverse_note.split()))
    dumped = {k: v for k, v in active.spec.model_dump(mode="json", exclude_none=True).items()
              if v not in ({}, [], "")}
    typer.echo(yaml.dump(dumped, Dumper=_BlockDumper, sort_keys=False,
                         allow_unicode=True).rstrip())


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (templates, setup scripts) as `|` blocks, as one writes them."""


def _str_block(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _str_block)


@tools_app.command("check")
@clean_errors
def check_tools(target: Optional[str] = typer.Argument(None, help="A spec FILE or a tool NAME; "
                                                        "default: every tool."),
                workspace: Path = WorkspaceOpt) -> None:
    """Validate tools: schema, round trip in a scratch copy, footprint, hostile params."""
    reports = _check_all(_targets(target, workspace), workspace)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def _targets(target: str | None, workspace: Path) -> list[ToolSpec]:
    if target is not None and (Path(target).is_file() or target.endswith((".yaml", ".yml"))):
        return load_spec_file(target)
    library = _library(workspace)
    return [library.get(target)] if target is not None else library.tools()


def _check_all(specs: list[ToolSpec], workspace: Path) -> list[CheckReport]:
    """Check each tool, printing its result as it is known; a progress bar on a terminal."""
    console = Console(highlight=False)
    if not console.is_terminal:
        return [_print_report(check_tool(spec, workspace), typer.echo) for spec in specs]

    def say(line: str) -> None:  # above the bar, taken as text (a tool's words are not markup)
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    columns = (SpinnerColumn(), TextColumn("checking {task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    reports = []
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("", total=len(specs))
        for spec in specs:
            progress.update(bar, description=spec.name)
            reports.append(_print_report(check_tool(spec, workspace), say))
            progress.advance(bar)
    return reports


def _print_report(report: CheckReport, echo: Callable[[str], Any]) -> CheckReport:
    summary = (f"{report.runs} round trip(s), {report.hostile_runs} hostile values "
               f"({report.hostile_refused} refused, the rest ran inert)")
    echo(f"{'ok  ' if report.ok else 'FAIL'} {report.tool}: {summary}")
    for line in report.problems + report.notes:
        echo(f"     - {line}")
    return report


@tools_app.command("add")
@clean_errors
def add_tool(file: Path, workspace: Path = WorkspaceOpt,
             force: bool = typer.Option(False, "--force", help="Replace an existing file."),
             ) -> None:
    """Check a spec file, then install it into the workspace library."""
    specs = load_spec_file(file)
    library = _library(workspace)
    reports = _check_all(specs, workspace)
    if not all(r.ok for r in reports):
        typer.echo("not installed: the check failed", err=True)
        raise typer.Exit(1)
    target = workspace_tools_dir(workspace) / (f"{specs[0].name}.yaml" if len(specs) == 1
                                               else file.name)
    if target.exists() and not force:
        raise UsageError(f"{target} exists; pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(file, target)
    typer.echo(f"installed {', '.join(s.name for s in specs)} into {target}")
    for spec in specs:
        _say_override(library, spec.name)


def _say_override(library: ToolLibrary, name: str) -> None:
    try:
        earlier = library.entry(name)
    except UsageError:
        return
    typer.echo(f"  {name} now overrides the {earlier.layer} definition in {earlier.source}")
