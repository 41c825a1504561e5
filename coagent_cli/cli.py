"""coagent: run several LLM agents at once on one shared live state, serializable in
launch order (MTPO). See README.md for the model."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console

from coagent_cli.core import CONTROLLERS
from coagent_cli.errors import CoagentError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False)
console = Console()


def _fail(err: CoagentError) -> None:
    typer.echo(f"coagent: {err}", err=True)
    raise typer.Exit(2)


@app.command()
def version() -> None:
    """Print the coagent version."""
    from coagent_cli import __version__

    typer.echo(__version__)


@app.command()
def simulate(
    seed: int = typer.Option(1, help="Interleaving seed (tie-breaks between simultaneous events)."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Also write the full report as JSON to this file."),
) -> None:
    """Simulate four scripted agents contending for one repository under every controller.

    The same agents and interleaving seed go through serial, mtpo, 2pl, occ and none in
    the discrete-event simulator (virtual time, in-memory state), and each final state
    is checked against the serial run. For a real run on real files: `coagent demo`.
    """
    from coagent_cli.sim.report import comparison_table
    from coagent_cli.sim.scenarios import contended_repo
    from coagent_cli.sim.simulator import compare

    scenario = contended_repo()
    console.print(f"[bold]coagent simulate[/bold]: {scenario.name} - {scenario.description}")
    console.print(f"agents in rank order: {', '.join(scenario.programs)}\n")
    reports = compare(scenario.programs, scenario.initial, seed=seed)
    console.print(comparison_table(reports, title="Same agents, same interleaving seed, five controllers"))
    mtpo = next(r for r in reports if r.controller == "mtpo")
    serial = next(r for r in reports if r.controller == "serial")
    verdict = "equals" if mtpo.correct else "DIFFERS FROM"
    console.print(
        f"\nMTPO final state {verdict} the serial run; makespan {mtpo.makespan}s vs serial {serial.makespan}s "
        f"({serial.makespan / mtpo.makespan:.2f}x), {mtpo.stats['notices']} notices, "
        f"{mtpo.stats['undos']} undos, {mtpo.stats['redos']} redos."
    )
    if json_out:
        with open(json_out, "w", encoding="utf-8") as fh:
            json.dump([vars(r) for r in reports], fh, indent=2, default=str)
    if not mtpo.correct:
        raise typer.Exit(1)


@app.command()
def bench(
    core: bool = typer.Option(False, "--core", help="Protocol-core throughput and version collection."),
    agents: int = typer.Option(64, min=1, help="Agents in the core benchmark."),
    ops: int = typer.Option(1000, min=1, help="Ops per agent in the core benchmark."),
    controller: str = typer.Option("mtpo", help=f"One of: {', '.join(CONTROLLERS)}."),
) -> None:
    """Benchmarks, reported as ratios against a baseline measured in the same run."""
    from coagent_cli.bench.core import run_core

    if controller not in CONTROLLERS:
        _fail(CoagentError(f"unknown controller {controller!r}; choose one of {', '.join(CONTROLLERS)}"))
    if not core:
        typer.echo("Nothing selected; try `coagent bench --core`.")
        raise typer.Exit(2)
    from rich.progress import Progress

    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        runs = {c: bar.add_task(f"{'with' if c else 'without'} collection", total=agents * ops)
                for c in (True, False)}
        on, off = (run_core(controller, agents=agents, ops_per_agent=ops, collect=c,
                            progress=lambda done, total, t=runs[c]: bar.update(t, completed=done))
                   for c in (True, False))
    console.print(f"controller {controller}: {on.ops} ops by {agents} agents")
    console.print(f"  throughput: {on.ops_per_second:,.0f} ops/s with collection, "
                  f"{off.ops_per_second:,.0f} ops/s without")
    console.print(f"  peak stored versions: {on.peak_versions:,} with collection, {off.peak_versions:,} without "
                  f"({off.peak_versions / max(on.peak_versions, 1):.1f}x)")
    console.print(f"  undos {on.undos:,}, redos {on.redos:,}, notices {on.notices:,}")


def _mount() -> None:
    from coagent_cli.tools.cli import tools_app

    from coagent_cli.daemon.cli import daemon_app, log_cmd, recover_cmd, undo_cmd
    from coagent_cli.monitor.cli import monitor_cmd
    from coagent_cli.run.cli import demo_cmd, run_cmd
    from coagent_cli.shell.cli import register as register_shell_commands
    from toolsmith.cli import toolsmith_cmd

    app.command("run")(run_cmd)
    app.command("demo")(demo_cmd)
    app.add_typer(tools_app, name="tools", help="The declared-tool library: list, show, check, add.")
    app.command("monitor")(monitor_cmd)
    app.add_typer(daemon_app, name="daemon", help="Start, stop or inspect the per-workspace daemon.")
    app.command("log")(log_cmd)
    app.command("recover")(recover_cmd)
    app.command("undo")(undo_cmd)
    app.command("toolsmith")(toolsmith_cmd)
    register_shell_commands(app)  # shell, exec, inbox, done


_mount()


def main() -> None:
    try:
        app()
    except CoagentError as err:
        _fail(err)
