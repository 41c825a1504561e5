"""Declared tools through the real daemon: hot reload of the library, and precision.

Real socket, real files, the real WorkspaceExecutor and a real watchdog watcher; the
user-level tool directory is pointed into a temporary directory so the host's own tools
stay out of it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from coagent_cli.daemon.client import Client
from coagent_cli.daemon.library import LibraryChange, diff_tools
from coagent_cli.daemon.run import workspace_executor
from coagent_cli.tools.library import BUILTIN_DIR, workspace_tools_dir
from coagent_cli.bench.workloads import as_raw, disjoint_tool_steps
from test_daemon import DaemonThread, events, run_line, wait_until

pytestmark = pytest.mark.timeout(60)

BUILTIN_COUNT = len(list(BUILTIN_DIR.glob("*.yaml")))

STAMP_SCRIPT = "import sys\nopen(sys.argv[1], 'w').write((sys.argv[2:] or ['v1'])[0] + '\\n')\n"


def stamp_spec(version: str) -> str:
    """A tool added while the daemon runs; `match` lifts `python3 stamp.py PATH` onto it."""
    return (
        "name: stamp\n"
        "description: Stamp a file with a version line.\n"
        "params:\n  path: {type: string, description: 'File to stamp.'}\n"
        f"command: python3 stamp.py {{path}} '{version}'\n"
        "writes: ['file:{path}']\n"
        "inverse: snapshot\n"
        "match:\n  - python3 stamp.py {path}\n"
        "examples: [{params: {path: out.txt}, files: {stamp.py: 'pass'}}]\n"
    )


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    path = Path(tempfile.mkdtemp(prefix="cgt", dir="/tmp"))  # short: the socket lives inside
    (path / "stamp.py").write_text(STAMP_SCRIPT)
    for part in ("a", "b"):
        (path / part).mkdir()
        (path / part / "seed.txt").write_text(f"{part} seed step\n")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(workspace: Path) -> Iterator[DaemonThread]:
    d = DaemonThread(workspace, ["alice", "bob"], factory=workspace_executor).start()
    yield d
    d.stop()


def library_size(d: DaemonThread) -> int:
    with d.client() as admin:
        return int(admin.status()["snapshot"]["library_size"])


def put_tool(workspace: Path, name: str, text: str) -> None:
    folder = workspace_tools_dir(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"  # written whole, then renamed: the watcher sees one file
    tmp.write_text(text)
    tmp.rename(folder / f"{name}.yaml")


def changes(ws: Path) -> list[dict[str, Any]]:
    return [e.payload for e in events(ws) if e.kind == "tool_library_changed"]


# ---------------------------------------------------------------- hot reload


def test_diff_tools_names_added_changed_removed() -> None:
    change = diff_tools({"a": "1", "b": "1", "c": "1"}, {"b": "2", "c": "1", "d": "1"}, 7)
    assert change == LibraryChange(7, added=("d",), changed=("b",), removed=("a",))
    assert not diff_tools({"a": "1"}, {"a": "1"}, 7)


def test_status_reports_the_library_size(daemon: DaemonThread) -> None:
    assert library_size(daemon) == BUILTIN_COUNT


def test_tool_added_while_running_is_announced_callable_and_lifts_raw_lines(
        daemon: DaemonThread, workspace: Path) -> None:
    assert daemon.info is not None
    with Client(daemon.info.socket, timeout=10) as monitor:
        monitor.hello(token=daemon.tokens.monitor, role="monitor")
        monitor.request("subscribe")
        assert monitor.receive_raw()["kind"] == "snapshot"
        put_tool(workspace, "stamp", stamp_spec("v1"))
        wait_until(lambda: library_size(daemon) == BUILTIN_COUNT + 1)  # the watcher, unprompted
        added = next_event(monitor, lambda e: e["kind"] == "tool_added")
    assert added["detail"] == "stamp"
    with daemon.client("alice") as alice:
        grant = alice.begin_op(tool="stamp", params={"path": "a/out.txt"}, cwd=str(workspace))
        assert grant["action"] == "served" and grant["exit_status"] == 0
        lifted = run_line(alice, workspace, "python3 stamp.py b/raw.txt")
        with daemon.client() as admin:
            ops = {o["op"]: o for o in admin.status()["snapshot"]["ops"]}
    assert (workspace / "a" / "out.txt").read_text() == "v1\n"
    assert (workspace / "b" / "raw.txt").read_text() == "v1\n"
    assert ops[lifted["op"]]["writes"] == ["file:b/raw.txt"]  # not `*`: lifted onto stamp
    assert changes(workspace)[0]["added"] == ["stamp"]


def next_event(monitor: Client, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    for _ in range(1000):  # bounded: each receive_raw times out after 10 s
        event = monitor.receive_raw()
        if wanted(event):
            return event
    raise AssertionError("event not seen")


def test_changed_tool_is_used_by_the_next_begin_op(daemon: DaemonThread, workspace: Path) -> None:
    put_tool(workspace, "stamp", stamp_spec("v1"))
    wait_until(lambda: library_size(daemon) == BUILTIN_COUNT + 1)
    put_tool(workspace, "stamp", stamp_spec("v2"))
    wait_until(lambda: any(c["changed"] == ["stamp"] for c in changes(workspace)))
    with daemon.client("bob") as bob:
        bob.begin_op(tool="stamp", params={"path": "b/out.txt"}, cwd=str(workspace))
    assert (workspace / "b" / "out.txt").read_text() == "v2\n"
    assert library_size(daemon) == BUILTIN_COUNT + 1


def test_tool_written_just_now_is_found_without_waiting(daemon: DaemonThread, workspace: Path) -> None:
    with daemon.client("alice") as alice:
        put_tool(workspace, "stamp", stamp_spec("now"))
        grant = alice.begin_op(tool="stamp", params={"path": "a/now.txt"}, cwd=str(workspace))
    assert grant["exit_status"] == 0 and (workspace / "a" / "now.txt").read_text() == "now\n"
    assert library_size(daemon) == BUILTIN_COUNT + 1
    tool_events = [c for c in changes(workspace) if "stamp" in c["added"]]
    assert len(tool_events) == 1  # reported once, whoever noticed it first


# ---------------------------------------------------------------- precision: tools vs raw


def do_step(c: Client, ws: Path, raw: bool, tool: str, params: dict[str, str]) -> None:
    if raw:
        out = run_line(c, ws, as_raw(tool, params))
        assert out["ended"]["type"] == "op_ended"
    else:
        grant = c.begin_op(tool=tool, params=params, cwd=str(ws))
        assert grant["exit_status"] == 0, grant


def tree(ws: Path) -> dict[str, str]:
    return {str(p.relative_to(ws)): p.read_text() for part in ("a", "b")
            for p in sorted((ws / part).rglob("*")) if p.is_file()}


def run_interleaved(d: DaemonThread, ws: Path, raw: bool, n: int) -> None:
    """bob (the later rank) takes each step just before alice: the worst order for `*`."""
    with d.client("alice") as alice, d.client("bob") as bob:
        for (ta, pa), (tb, pb) in zip(disjoint_tool_steps("a", n), disjoint_tool_steps("b", n), strict=True):
            do_step(bob, ws, raw, tb, pb)
            do_step(alice, ws, raw, ta, pa)
        for c in (alice, bob):
            wait_until(lambda c=c: finish_ignoring_notices(c))  # type: ignore[misc]


def finish_ignoring_notices(c: Client) -> bool:
    """The raw run's notices are false alarms (`*` reads everything; each agent's work
    depends on its own directory only): take them, then finish."""
    c.inbox()
    return bool(c.finish()["finished"])


def contention(ws: Path) -> dict[str, int]:
    kinds = [e.kind for e in events(ws)]
    return {k: kinds.count(k) for k in ("notify", "undo", "redo", "wait", "hold", "drop")}


def fresh_workspace(tmp: Path, name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"cg{name}", dir="/tmp"))
    for part in ("a", "b"):
        (path / part).mkdir()
        (path / part / "seed.txt").write_text(f"{part} seed step\n")
    return path


def test_disjoint_tool_work_has_no_notices_or_undos_raw_is_serialized(tmp_path: Path) -> None:
    results: dict[bool, tuple[dict[str, str], dict[str, int]]] = {}
    for raw in (False, True):
        ws = fresh_workspace(tmp_path, "raw" if raw else "tool")
        try:
            d = DaemonThread(ws, ["alice", "bob"], factory=workspace_executor).start()
            try:
                run_interleaved(d, ws, raw, 6)
            finally:
                d.stop()
            results[raw] = (tree(ws), contention(ws))
        finally:
            shutil.rmtree(ws, ignore_errors=True)
    (tool_tree, tool_counts), (raw_tree, raw_counts) = results[False], results[True]
    assert tool_counts == dict.fromkeys(tool_counts, 0)  # precise footprints: nothing to fix
    assert raw_tree == tool_tree  # raw is correct ...
    assert raw_counts["undo"] + raw_counts["wait"] + raw_counts["hold"] > 0  # ... but serialized on `*`
    assert raw_counts["notify"] > 0  # and bob is told about alice's writes he never read
    assert tool_tree["a/f0.txt"] == "a STEP 0\n" and tool_tree["b/log.txt"] == "b 1\nb 4\n"
