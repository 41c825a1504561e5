"""`coagent run` and `coagent demo`, as typer command functions for the main app to mount:

    app.command("run")(run_cmd)
    app.command("demo")(demo_cmd)

Exit codes: 0 when every agent finished and the run reached quiescence (the demo: and
its final tree equals the serial run's); 1 otherwise, with one line per failed agent on
stderr; 2 for bad input (a plan that does not validate, an unknown flag value), in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from coagent_cli.errors import CoagentError, UsageError
from coagent_cli.run.plan import Plan, load_plan, plan_from_tasks
from coagent_cli.run.report import RunReport, report_table

__all__ = ["run_cmd", "demo_cmd", "build_plan"]

EXIT_FAILED = 1
EXIT_USAGE = 2


def _usage_exit(exc: CoagentError) -> typer.Exit:
    typer.echo(f"coagent: {exc}", err=True)
    return typer.Exit(EXIT_USAGE)


def build_plan(plan_file: Optional[Path], tasks: list[str], *, workspace: Optional[Path], cc: Optional[str],
               model: Optional[str], base_url: Optional[str]) -> Plan:
    """The plan file or the --task list, with the flags laid over it."""
    if plan_file is not None and tasks:
        raise UsageError("give a plan file or --task, not both", code="bad_plan")
    if plan_file is None and not tasks:
        raise UsageError("nothing to run: give a plan file (PLAN.yaml) or --task TEXT", code="bad_plan")
    plan = load_plan(plan_file) if plan_file is not None else plan_from_tasks(tasks, model=model)
    return plan.overridden(workspace=workspace, cc=cc, model=model, base_url=base_url)


def _view(console: Console, no_live: bool) -> str:
    return "plain" if no_live or not console.is_terminal else "live"


def _conclude(report: RunReport, console: Console, json_path: Optional[Path]) -> None:
    console.print(report_table(report))
    console.print(f"trajectories and report: {report.run_dir}", markup=False, highlight=False)
    if json_path is not None:
        report.write_json(json_path)
    if not report.ok:
        for line in report.failure_lines():
            typer.echo(f"coagent: {line}", err=True)
        raise typer.Exit(EXIT_FAILED)


def run_cmd(
    plan_file: Optional[Path] = typer.Argument(None, metavar="[PLAN.yaml]", help="A run plan (agents in rank order)."),
    task: List[str] = typer.Option([], "--task", help="A built-in agent's task (repeat; order = rank)."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w",
                                             help="The shared workspace (default: the plan's, else .)."),
    cc: Optional[str] = typer.Option(None, "--cc",
                                     help="mtpo | 2pl | occ | serial | none (default: the plan's, else mtpo)."),
    model: Optional[str] = typer.Option(None, "--model",
                                        help="Model of built-in agents (`scripted`, or a model name)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint of built-in agents."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report here too."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", min=0.1, help="Stop the run after SECONDS."),
    no_live: bool = typer.Option(False, "--no-live", help="Plain lines instead of the live dashboard."),
) -> None:
    """Run agents at once on one workspace, serializable in rank order. On a workspace
    whose last run crashed and was recovered (`coagent recover`), continue that run where
    it was instead of starting over."""
    console = Console(highlight=False)
    try:
        plan = build_plan(plan_file, list(task), workspace=workspace, cc=cc, model=model, base_url=base_url)
        root = plan.workspace or Path.cwd()
        if not root.is_dir():
            raise UsageError(f"workspace {root} is not a directory", code="bad_workspace")
        # Imported here: the launcher pulls in the openai SDK, and every gated
        # `coagent exec/inbox/done` would pay for it at start-up.
        from coagent_cli.run.launcher import RunOptions, run_plan

        options = RunOptions(root, cc=plan.cc, time_limit=time_limit, view=_view(console, no_live), console=console)
        report = run_plan(plan, options)
    except UsageError as exc:
        raise _usage_exit(exc) from None
    except CoagentError as exc:
        typer.echo(f"coagent: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    _conclude(report, console, json_out)


def demo_cmd(
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report (both runs, the check) here."),
    keep: Optional[Path] = typer.Option(None, "--keep", help="Keep the two final trees under DIR (mtpo/, serial/)."),
    think: float = typer.Option(1.0, "--think", min=0.0, help="Scale of the agents' think times (1 = a few seconds)."),
    no_live: bool = typer.Option(False, "--no-live", help="Plain lines instead of the live dashboard."),
) -> None:
    """Offline demo (no API key): three scripted agents contend for one sample repository
    under MTPO, then the same agents run serially; the final trees must be equal."""
    from coagent_cli.run.demo import print_summary, run_demo

    console = Console(highlight=False)
    console.print("[bold]coagent demo[/bold]: alice, bob and carol (rank order) edit one sample "
                  "repository at the same time, under MTPO.")
    try:
        result = run_demo(think=think, keep=keep, view=_view(console, no_live), console=console)
    except CoagentError as exc:
        typer.echo(f"coagent: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    print_summary(result, console)
    if keep is not None:
        console.print(f"final trees kept in {keep}/mtpo and {keep}/serial", markup=False)
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
    failures = result.mtpo.failure_lines() + [f"serial run: {x}" for x in result.serial.failure_lines()]
    if not result.equal:
        failures.append(f"the MTPO tree differs from the serial tree: {', '.join(result.differing)}")
    for line in failures:
        typer.echo(f"coagent: {line}", err=True)
    if failures:
        raise typer.Exit(EXIT_FAILED)
