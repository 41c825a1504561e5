"""Library layers and overrides, version and reload, the hot-reload watcher, and the CLI."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from coagent_cli.tools import ToolLibrary
from coagent_cli.tools.cli import tools_app
from coagent_cli.tools.library import BUILTIN_DIR, user_tools_dir, workspace_tools_dir
from coagent_cli.tools.watcher import LibraryWatcher

BUILTINS = {p.stem for p in BUILTIN_DIR.glob("*.yaml")}


def spec_text(name: str, description: str = "d") -> str:
    return (f"name: {name}\ndescription: {description}\nparams: {{x: {{type: string}}}}\n"
            "command: printf '%s' {x}\nexamples: [{params: {x: hi}}]\n")


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    ws, user = tmp_path / "ws", tmp_path / "config" / "coagent" / "tools"
    ws.mkdir()
    return ws, user


def put(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def test_builtins_are_all_there(dirs: tuple[Path, Path]) -> None:
    library = ToolLibrary.for_workspace(dirs[0], user_dir=dirs[1])
    assert {s.name for s in library.tools()} == BUILTINS >= {
        "read_file", "write_file", "replace_in_file", "insert_lines", "append_to_file",
        "create_file", "delete_file", "move_file", "make_dir", "list_dir", "search", "git_add",
        "git_commit", "git_create_branch", "git_delete_branch", "git_checkout_branch"}
    assert library.errors == [] and library.version == 1


def test_workspace_overrides_user_overrides_builtin(dirs: tuple[Path, Path]) -> None:
    ws, user = dirs
    user_file = put(user, "read_file", spec_text("read_file", "user's"))
    ws_file = put(workspace_tools_dir(ws), "zz", spec_text("read_file", "project's"))
    put(user, "mine", spec_text("mine"))
    library = ToolLibrary.for_workspace(ws, user_dir=user)
    entry = library.entry("read_file")
    assert (entry.spec.description, entry.layer, entry.source) == ("project's", "workspace",
                                                                   ws_file)
    history = library.history("read_file")
    assert [(e.layer, e.overridden_by) for e in history] == [
        ("builtin", user_file), ("user", ws_file), ("workspace", None)]
    assert library.get("mine").description == "d"


def test_user_dir_follows_xdg() -> None:
    assert user_tools_dir({"XDG_CONFIG_HOME": "/x"}) == Path("/x/coagent/tools")
    assert user_tools_dir({"HOME": "/h"}) == Path("/h/.config/coagent/tools")


def test_broken_files_are_skipped_and_reported(dirs: tuple[Path, Path]) -> None:
    ws, user = dirs
    bad = put(workspace_tools_dir(ws), "bad", "name: bad\ndescription: d\ncommand: [\n")
    library = ToolLibrary.for_workspace(ws, user_dir=user)
    assert [str(bad) in str(e) for e in library.errors] == [True]
    assert {s.name for s in library.tools()} == BUILTINS


def test_version_changes_only_when_the_set_changes(dirs: tuple[Path, Path]) -> None:
    ws, user = dirs
    library = ToolLibrary.for_workspace(ws, user_dir=user)
    assert library.reload() is False and library.version == 1
    path = put(workspace_tools_dir(ws), "new", spec_text("new"))
    assert library.reload() is True and library.version == 2
    path.write_text(spec_text("new", "changed"))
    assert library.reload() is True and library.version == 3
    assert library.get("new").description == "changed"
    path.unlink()
    assert library.reload() is True and library.version == 4
    assert "new" not in {s.name for s in library.tools()}


def wait_for(event: threading.Event, seconds: float = 10.0) -> bool:
    return event.wait(seconds)


@pytest.mark.timeout(30)
def test_watcher_sees_a_new_tool_even_before_its_directory_exists(
        dirs: tuple[Path, Path]) -> None:
    ws, user = dirs
    library = ToolLibrary.for_workspace(ws, user_dir=user)
    seen: list[int] = []
    changed = threading.Event()

    def on_change(lib: ToolLibrary) -> None:
        seen.append(lib.version)
        changed.set()

    with LibraryWatcher(library, on_change):
        put(workspace_tools_dir(ws), "hot", spec_text("hot"))
        deadline = time.monotonic() + 10
        while "hot" not in {s.name for s in library.tools()} and time.monotonic() < deadline:
            changed.wait(0.2)
            changed.clear()
        assert library.get("hot").name == "hot" and seen
        changed.clear()
        put(workspace_tools_dir(ws), "hot", spec_text("hot", "edited"))
        assert wait_for(changed) and library.get("hot").description == "edited"


# --- the CLI ---------------------------------------------------------------------------------

@pytest.fixture
def cli(tmp_path: Path):  # noqa: ANN201 - a function running the CLI
    app = typer.Typer()
    app.add_typer(tools_app, name="tools")
    runner = CliRunner()
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}

    def invoke(*args: str):  # noqa: ANN202
        return runner.invoke(app, ["tools", *args], env=env)

    return invoke


def test_cli_list_marks_overrides(cli, dirs: tuple[Path, Path]) -> None:
    ws, _ = dirs
    override = put(workspace_tools_dir(ws), "read_file", spec_text("read_file"))
    result = cli("list", "--workspace", str(ws))
    assert result.exit_code == 0
    assert f"(overridden by {override})" in result.output
    rows = json.loads(cli("list", "--json", "-w", str(ws)).output)
    by_layer = {r["layer"]: r for r in rows if r["name"] == "read_file"}
    assert by_layer["builtin"]["overridden_by"] == str(override)
    assert by_layer["workspace"]["active"] is True


def test_cli_show_renders_spec_source_and_override(cli, dirs: tuple[Path, Path]) -> None:
    ws, _ = dirs
    put(workspace_tools_dir(ws), "read_file", spec_text("read_file"))
    result = cli("show", "read_file", "-w", str(ws))
    assert result.exit_code == 0
    assert "workspace tool from" in result.output and "overrides the builtin" in result.output
    assert "command: printf '%s' {x}" in result.output
    assert "NOT exact" in cli("show", "git_delete_branch", "-w", str(ws)).output


@pytest.mark.parametrize("args, words", [
    (["show", "nope"], "no tool named 'nope'"),
    (["check", "missing.yaml"], "cannot read"),
    (["add", "missing.yaml"], "cannot read"),
    (["list", "-w", "/nonexistent/dir"], "not a directory"),
])
def test_cli_bad_input_exits_2_without_traceback(cli, dirs: tuple[Path, Path], args: list[str],
                                                 words: str) -> None:
    result = cli(*args, *([] if "-w" in args else ["-w", str(dirs[0])]))
    assert result.exit_code == 2 and words in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_cli_check_names_the_broken_line(cli, dirs: tuple[Path, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec_text("bad").replace("{x}", "'{x}'"))
    result = cli("check", str(bad), "-w", str(dirs[0]))
    assert result.exit_code == 2 and f"{bad}:4: command:" in result.output


def test_cli_check_and_add(cli, dirs: tuple[Path, Path], tmp_path: Path) -> None:
    ws, _ = dirs
    good = tmp_path / "shout.yaml"
    good.write_text(spec_text("shout"))
    assert cli("check", str(good), "-w", str(ws)).exit_code == 0
    result = cli("check", "replace_in_file", "-w", str(ws))
    assert result.exit_code == 0 and result.output.startswith("ok")
    result = cli("add", str(good), "-w", str(ws))
    assert result.exit_code == 0, result.output
    assert (workspace_tools_dir(ws) / "shout.yaml").read_text() == good.read_text()
    assert cli("add", str(good), "-w", str(ws)).exit_code == 2  # exists; needs --force
    assert cli("add", str(good), "-w", str(ws), "--force").exit_code == 0
    evil = tmp_path / "evil.yaml"
    evil.write_text(spec_text("evil").replace("printf '%s' {x}", "eval echo {x}"))
    result = cli("add", str(evil), "-w", str(ws))
    assert result.exit_code == 1 and "INJECTION" in result.output
    assert not (workspace_tools_dir(ws) / "evil.yaml").exists()
