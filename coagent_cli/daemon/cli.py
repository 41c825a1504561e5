"""The daemon's commands: `coagent daemon start|stop|status`, `log`, `recover`, `undo`.

`daemon_app` is a typer sub-app; `log_cmd`, `recover_cmd` and `undo_cmd` are plain
command functions for the top-level app to mount (`app.command("log")(log_cmd)`).
Every failure reaches the user as one line on stderr: exit 2 for bad input (a flag, a
missing daemon or journal), 1 for anything else; never a traceback.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, TypeVar

import typer

from coagent_cli.errors import CoagentError, UsageError, WireError

F = TypeVar("F", bound=Callable[..., Any])

daemon_app = typer.Typer(no_args_is_help=True, add_completion=False,
                         help="Start, stop and inspect the daemon of a workspace run.")

WorkspaceOpt = typer.Option(Path("."), "--workspace", "-w", help="The workspace directory.")


def one_line_errors(fn: F) -> F:
    """Turn every coagent error into one line on stderr and an exit code."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CoagentError as exc:
            message = exc.message.splitlines()[0] if exc.message else exc.code
            typer.echo(f"coagent: {message}", err=True)
            raise typer.Exit(2 if isinstance(exc, (UsageError, WireError)) else 1) from None
        except OSError as exc:
            typer.echo(f"coagent: {exc}", err=True)
            raise typer.Exit(1) from None
    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------- daemon start|stop|status


@daemon_app.command("start")
@one_line_errors
def start_cmd(
    workspace: Path = WorkspaceOpt,
    cc: str = typer.Option("mtpo", "--cc", help="mtpo | 2pl | occ | serial | none"),
    agent: List[str] = typer.Option([], "--agent", "-a", help="An agent, in rank order (repeat)."),
    socket: Optional[Path] = typer.Option(None, "--socket", help="Socket path (default under .coagent/run/)."),
    foreground: bool = typer.Option(False, "--foreground", help="Serve in this process until stopped."),
) -> None:
    """Start the daemon for a workspace (in the background unless --foreground)."""
    from coagent_cli.daemon import run

    settings = run.DaemonSettings(workspace, cc, list(agent), socket)
    if foreground:
        raise typer.Exit(run.main(_argv(settings)))
    info = run.start_detached(settings)
    paths = run.paths_for(workspace, socket)
    typer.echo(f"daemon {info.pid} serves {paths.workspace} ({info.cc}) on {info.socket}")
    typer.echo(f"agents: {', '.join(info.agents) or '(none)'}; tokens in {paths.tokens}")


def _argv(settings: Any) -> list[str]:
    argv = ["--workspace", str(settings.workspace), "--cc", settings.cc]
    for a in settings.agents:
        argv += ["--agent", a]
    return argv + (["--socket", str(settings.socket)] if settings.socket else [])


@daemon_app.command("stop")
@one_line_errors
def stop_cmd(workspace: Path = WorkspaceOpt) -> None:
    """Shut the workspace's daemon down (it journals its end first)."""
    from coagent_cli.daemon import run

    if run.stop_daemon(workspace):
        typer.echo("daemon stopped")
    else:
        typer.echo("no daemon is running for this workspace")


@daemon_app.command("status")
@one_line_errors
def status_cmd(workspace: Path = WorkspaceOpt,
               as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """Agents, their states, the protocol's counters and pending directives. Exit 1
    when no daemon is running."""
    from coagent_cli.daemon import run

    paths = run.paths_for(workspace)
    info = run.daemon_info(paths)
    facts = _journal_facts(paths.journal)
    if info is None:
        if as_json:
            typer.echo(json.dumps({"running": False, **facts}))
        else:
            typer.echo(f"no daemon is running (run state: {facts.get('run_state') or 'none'})")
        raise typer.Exit(1)
    snapshot = _status_over_socket(info, paths)
    if as_json:
        typer.echo(json.dumps({"running": True, "pid": info.pid, "socket": info.socket,
                               "snapshot": snapshot, **facts}))
        return
    for line in status_lines(info, snapshot, facts):
        typer.echo(line)


def _status_over_socket(info: Any, paths: Any) -> dict[str, Any]:
    from coagent_cli.daemon.client import Client
    from coagent_cli.daemon.run import Tokens

    tokens = Tokens.load(paths.tokens)
    with Client(info.socket, timeout=10) as client:
        client.hello(token=tokens.monitor, role="monitor")
        return client.status()["snapshot"]  # type: ignore[no-any-return]


def _journal_facts(journal_path: Path) -> dict[str, Any]:
    from coagent_cli.journal import Journal

    if not journal_path.exists():
        return {}
    with Journal.open(journal_path) as journal:
        directives = [{"agent": e.agent, "directive": e.kind.removesuffix("_agent"),
                       "reason": e.payload.get("reason", "")}
                      for e in journal.timeline() if e.kind in ("resume_agent", "restart_agent", "abort_agent")]
        return {"run_state": journal.get_meta("run_state"), "core": journal.get_meta("core") or {},
                "directives": directives}


def status_lines(info: Any, snapshot: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    lines = [f"daemon {info.pid} on {info.socket} ({snapshot['cc']})"
             + ("  quiescent" if snapshot.get("quiescent") else "")]
    for a in snapshot["agents"]:
        lines.append(f"  {a['rank']:>2} {a['name']:<16} {a['state']:<10} ops {a['ops']:<4} "
                     f"notices {a['pending_notices']}")
    stats = facts.get("core", {}).get("stats", {})
    shown = {k: v for k, v in stats.items() if v}
    if shown:
        lines.append("  counters: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    for d in facts.get("directives", [])[-10:]:
        lines.append(f"  directive: {d['directive']} {d['agent']} {d['reason']}".rstrip())
    return lines


# ---------------------------------------------------------------- log


@one_line_errors
def log_cmd(
    workspace: Path = WorkspaceOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    agent: Optional[str] = typer.Option(None, "--agent", help="Only this agent's rows."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new rows (Ctrl-C ends)."),
    follow_for: Optional[float] = typer.Option(None, "--for", help="With --follow: stop after SECONDS."),
) -> None:
    """The run's journal as a timeline."""
    from coagent_cli.daemon.run import paths_for
    from coagent_cli.journal import Journal

    paths = paths_for(workspace)
    if not paths.journal.exists():
        raise UsageError(f"no run journal in {paths.state}", code="no_journal")
    deadline = None if follow_for is None else time.monotonic() + follow_for
    with Journal.open(paths.journal) as journal:
        last = _print_rows(journal, agent, 0, as_json)
        try:
            while follow and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.2)
                last = _print_rows(journal, agent, last, as_json)
        except KeyboardInterrupt:
            pass


def _print_rows(journal: Any, agent: str | None, after: int, as_json: bool) -> int:
    for event in journal.timeline(agent, after_seq=after):
        typer.echo(json.dumps(event_json(event)) if as_json else format_event(event))
        after = event.seq
    return after


def event_json(event: Any) -> dict[str, Any]:
    return {"seq": event.seq, "ts": event.ts, "kind": event.kind, "agent": event.agent,
            "op": event.op_id, "payload": event.payload}


def format_event(event: Any) -> str:
    """One readable line: time, seq, kind, agent, op, what it says."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.ts)) + f".{int(event.ts * 1000) % 1000:03d}"
    who = event.agent or "-"
    op = f"op {event.op_id}" if event.op_id is not None else ""
    return f"{stamp} {event.seq:>6} {event.kind:<18} {who:<12} {op:<9} {_detail(event)}".rstrip()


def _detail(event: Any) -> str:
    text = _what(event)
    by_recover = event.payload.get("recovered")
    return f"{text} [recover: {by_recover}]".lstrip() if isinstance(by_recover, str) else text


def _what(event: Any) -> str:
    p = event.payload
    if event.kind == "op_requested":
        op = p.get("op", {})
        return f"{op.get('label', '')}  [reads {_keys(op.get('reads'))}; writes {_keys(op.get('writes'))}]"
    if event.kind == "notify":
        n = p.get("notice", {})
        return f"-> {n.get('agent')}: {n.get('kind')} {n.get('key')} by {n.get('by')}"
    if event.kind in ("op_executed", "op_redone"):
        writes = ", ".join(sorted(p.get("writes", {})))
        extra = "" if p.get("ok", True) else f" FAILED: {p.get('reason', '')}"
        status = f"exit {p['exit_status']} " if "exit_status" in p else ""
        return f"{status}wrote {writes or 'nothing'}{extra}"
    if event.kind in ("refuse", "wait", "drop", "abort_agent", "effect_failed"):
        return str(p.get("message") or p.get("reason") or p.get("code") or "")
    if event.kind == "redo":
        return "base changed" if p.get("base_changed") else "base unchanged"
    if event.kind == "retract_requested":
        return "retract ops " + ", ".join(map(str, p.get("op_ids", [])))
    if event.kind == "recovered":
        return "; ".join(f"{len(p.get(k) or [])} {k}" for k in ("reverted", "finished", "problems"))
    return ""


def _keys(keys: Any) -> str:
    keys = list(keys or [])
    return ", ".join(keys[:4]) + (f" (+{len(keys) - 4})" if len(keys) > 4 else "") if keys else "-"


# ---------------------------------------------------------------- recover, undo


@one_line_errors
def recover_cmd(workspace: Path = WorkspaceOpt) -> None:
    """After a crash: revert every effect left half-done, then finish what the dead
    daemon had under way (an op undone for a reorder is redone), so the workspace holds
    every op the journal says is applied, in rank order. `coagent daemon start` then
    continues the run with the same agents and order."""
    from coagent_cli.daemon.run import recover

    report = recover(workspace)
    for line in report.reverted:
        typer.echo(f"reverted {line}")
    for line in report.unrevertable:
        typer.echo(f"could not revert {line} (no images); `coagent undo --all` restores the launch state")
    for line in report.finished:
        typer.echo(f"finished {line}")
    for line in report.problems:
        typer.echo(f"warning: {line}")
    if not (report.reverted or report.unrevertable or report.finished or report.problems):
        typer.echo("nothing to recover: every journaled effect had finished")
    if report.state_before == "running":
        typer.echo("the run can be continued with `coagent daemon start`")


@one_line_errors
def undo_cmd(
    workspace: Path = WorkspaceOpt,
    agent: Optional[str] = typer.Option(None, "--agent", help="Compensate this agent's writes (daemon running)."),
    all_: bool = typer.Option(False, "--all", help="Restore the launch state byte for byte (daemon stopped)."),
) -> None:
    """Undo one agent's writes through the running daemon, or the whole run."""
    if all_ == (agent is not None):
        raise UsageError("give exactly one of --agent NAME and --all")
    if all_:
        from coagent_cli.daemon.run import undo_all

        changed = undo_all(workspace)
        typer.echo(f"restored the launch state ({len(changed)} paths changed)")
        return
    ops = _retract_agent(workspace, agent or "")
    typer.echo(f"undid {len(ops)} ops of {agent}" + (f": {', '.join(map(str, ops))}" if ops else ""))


def _retract_agent(workspace: Path, agent: str) -> list[int]:
    from coagent_cli.daemon import run
    from coagent_cli.daemon.client import Client

    paths = run.paths_for(workspace)
    info = run.daemon_info(paths)
    if info is None:
        raise UsageError("undo --agent needs the run's daemon; none is running", code="no_daemon")
    tokens = run.Tokens.load(paths.tokens)
    if agent not in tokens.agents:
        raise UsageError(f"no agent {agent!r} in this run ({', '.join(tokens.agents)})", code="unknown_agent")
    with Client(info.socket, timeout=120) as client:
        client.hello(token=tokens.admin, role="admin")
        return list(client.retract(agent, "all")["ops"])
