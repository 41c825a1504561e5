"""Spec validation, loader errors (file, line, field), rendering, path confinement, matcher."""

from __future__ import annotations

import os
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest

from coagent_cli.core.keys import Key
from coagent_cli.errors import OutsideWorkspace, ToolSpecError, UsageError
from coagent_cli.tools import ToolLibrary, ToolMatcher, load_spec_file, load_spec_text
from coagent_cli.tools.loader import SpecLoadError
from coagent_cli.tools.render import bind_params, render_footprint, render_forward
from coagent_cli.tools.template import command_problems, render_command

GOOD = """\
name: greet
description: Write a greeting.
params:
  path: {type: string}
  who: {type: string, default: world}
command: printf 'hello %s\\n' {who} > {path}
writes: ["file:{path}"]
examples:
  - params: {path: out.txt}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str) -> SpecLoadError:
    path = write(tmp_path, text)
    with pytest.raises(SpecLoadError) as info:
        load_spec_file(path)
    assert str(path) in str(info.value)
    return info.value


def test_good_spec_loads_with_defaults(tmp_path: Path) -> None:
    (spec,) = load_spec_file(write(tmp_path, GOOD))
    assert spec.name == "greet" and spec.inverse == "snapshot" and not spec.is_irreversible
    assert spec.path_params == {"path"}
    assert spec.parameters_schema()["required"] == ["path"]


@pytest.mark.parametrize("text, line, field, words", [
    (GOOD.replace("type: string}", "type: str}", 1), 4, "params.path.type", "string"),
    (GOOD.replace("writes:", "writez:"), 7, "writez", "unknown field"),
    (GOOD.replace("name: greet", "name: 9greet"), 1, "name", "pattern"),
    (GOOD.replace("{who} > {path}", "{whom} > {path}"), 6, "command", "{whom}"),
    (GOOD.replace("'hello %s\\n' {who}", "'hello {who}'"), 6, "command", "inside single"),
    (GOOD.replace("file:{path}", "file:{nope}"), 7, "writes[0]", "{nope}"),
    (GOOD.replace("  - params: {path: out.txt}", "  - params: {pth: out.txt}"), 9,
     "examples[0].params.pth", "unknown param"),
    (GOOD + "inverse: none\nirreversible: false\n", 11, "irreversible", "irreversible"),
    (GOOD + "inverse: rm -- {path}\ninverse_exact: false\n", 11, "inverse_exact", "inverse_note"),
    (GOOD.replace("writes: [\"file:{path}\"]", "writes: [\"git:index\"]"), 7, "writes[0]",
     "snapshot"),
    (GOOD + "match: ['{path} printf']\n", 10, "match[0]", "literal"),
    (GOOD + "match: ['printf']\n", 10, "match[0]", "required"),
    (GOOD + "builtin: write_file\n", 6, "command", "exactly one"),
    (GOOD + "command: echo\n", 10, "command", "duplicate"),
    ("name: [unclosed\n", 2, "", "YAML"),
    ("- 3\n", 1, "[0]", "mapping"),
])
def test_loader_errors_name_file_line_and_field(tmp_path: Path, text: str, line: int,
                                                 field: str, words: str) -> None:
    error = load_error(tmp_path, text)
    assert isinstance(error, ToolSpecError) and isinstance(error, ValueError)
    assert (error.line, error.field) == (line, field), str(error)
    assert f":{line}: " in str(error) and words in str(error)


def test_loader_refuses_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecLoadError, match="not UTF-8"):
        load_spec_file(path)
    with pytest.raises(SpecLoadError, match="cannot read"):
        load_spec_file(tmp_path / "missing.yaml")


def test_a_file_may_hold_several_specs(tmp_path: Path) -> None:
    other = GOOD.replace("name: greet", "name: greet2")
    text = "- " + GOOD.replace("\n", "\n  ") + "\n- " + other.replace("\n", "\n  ")
    specs = load_spec_text(text)
    assert [s.name for s in specs] == ["greet", "greet2"]


@pytest.mark.parametrize("template", [
    "echo '{x}'", 'echo "{x}"', "echo `echo {x}`", "cat <<EOF\n{x}\nEOF", "echo $'{x}'",
    'echo "$(echo "{x}")"', "echo 'unclosed {x}",
])
def test_placeholders_inside_quotes_are_refused(template: str) -> None:
    assert command_problems(template)


@pytest.mark.parametrize("template", [
    "echo {x}", "echo ${HOME} {x}", "echo \"$HOME\"{x}", "echo $(cat -- {x})", "a={x}; echo \"$a\"",
    "echo 'it''s' {x} # it's a comment", "echo --opt={x}", "printf '%s' {x} | wc -c",
])
def test_placeholders_in_plain_words_are_fine(template: str) -> None:
    assert command_problems(template) == []


@pytest.mark.parametrize("value", ["a b", "$(id)", "'", "\"", "`x`", "a\nb", "", "-n", "{x}"])
def test_rendered_values_come_back_as_one_word(value: str) -> None:
    command = render_command("printf '%s' {x}", {"x": value})
    assert shlex.split(command) == ["printf", "%s", value]
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert done.stdout == value


def test_footprints_render_to_normalised_keys(tmp_path: Path) -> None:
    (spec,) = load_spec_text(GOOD)
    (tmp_path / "d").mkdir()
    params = bind_params(spec, {"path": "d/../d/./x.txt"}, tmp_path)
    assert params == {"path": "d/x.txt", "who": "world"}
    assert render_footprint(spec, params, tmp_path) == (frozenset(), {Key.parse("file:d/x.txt")})
    assert render_forward(spec, params, {}) == "printf 'hello %s\\n' world > d/x.txt"


def test_absolute_paths_inside_the_workspace_become_relative(tmp_path: Path) -> None:
    (spec,) = load_spec_text(GOOD)
    assert bind_params(spec, {"path": str(tmp_path / "a.txt")}, tmp_path)["path"] == "a.txt"
    assert bind_params(spec, {"path": "-rf"}, tmp_path)["path"] == "./-rf"


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "link_out/x", "link_out",
                                  "inner/../../x"])
def test_paths_outside_the_workspace_are_refused(tmp_path: Path, path: str) -> None:
    ws = tmp_path / "ws"
    (ws / "inner").mkdir(parents=True)
    os.symlink(tmp_path, ws / "link_out")
    (spec,) = load_spec_text(GOOD)
    with pytest.raises(OutsideWorkspace, match="outside the workspace"):
        bind_params(spec, {"path": path}, ws)


def test_symlinks_inside_the_workspace_resolve_to_their_place(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "alias")
    (spec,) = load_spec_text(GOOD)
    assert bind_params(spec, {"path": "alias/f"}, tmp_path)["path"] == "real/f"
    assert bind_params(spec, {"path": "alias"}, tmp_path)["path"] == "alias"


@pytest.mark.parametrize("path", [".git/config", "sub/.git/hooks/x", ".coagent/journal"])
def test_git_and_coagent_internals_are_refused(tmp_path: Path, path: str) -> None:
    (spec,) = load_spec_text(GOOD)
    with pytest.raises(UsageError, match="tools do not touch"):
        bind_params(spec, {"path": path}, tmp_path)


@pytest.mark.parametrize("params, words", [
    ({}, "missing required"), ({"path": "a", "x": 1}, "unknown param"),
    ({"path": 3}, "must be a string"), ({"path": "a\0b"}, "NUL"),
])
def test_bad_params_are_refused_clearly(tmp_path: Path, params: dict, words: str) -> None:
    (spec,) = load_spec_text(GOOD)
    with pytest.raises(UsageError, match=words):
        bind_params(spec, params, tmp_path)


@pytest.fixture
def builtins(tmp_path: Path) -> ToolLibrary:
    return ToolLibrary.for_workspace(tmp_path / "ws", user_dir=tmp_path / "user")


@pytest.mark.parametrize("argv, tool, params", [
    (["mkdir", "build"], "make_dir", {"path": "sub/build"}),
    (["rm", "--", "-rf"], "delete_file", {"path": "sub/-rf"}),
    (["cat", "../top.txt"], "read_file", {"path": "top.txt"}),
    (["git", "commit", "-m", "fix it"], "git_commit", {"message": "fix it"}),
    (["git", "commit", "--message=a=b"], "git_commit", {"message": "a=b"}),
    (["git", "branch", "topic", "main"], "git_create_branch", {"name": "topic", "start": "main"}),
    (["ls", "-la"], "list_dir", {"path": "sub"}),
])
def test_matcher_lifts_raw_commands(tmp_path: Path, builtins: ToolLibrary, argv: list[str],
                                    tool: str, params: dict) -> None:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    found = ToolMatcher(builtins).match(argv, ws / "sub", ws)
    assert found is not None and found.tool.name == tool
    assert {k: v for k, v in found.params.items() if k in params} == params


@pytest.mark.parametrize("argv", [
    ["rm", "-rf", "x"], ["rm", "-rf"], ["cat", "../../etc/passwd"], ["mkdir", "-p", "a/b"],
    ["git", "branch", "-D"], ["git", "branch", "bad name"], ["sed", "-i", "s/a/b/", "f"],
    ["cat", ".git/config"], [],
])
def test_matcher_leaves_other_commands_raw(tmp_path: Path, builtins: ToolLibrary,
                                           argv: list[str]) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    assert ToolMatcher(builtins).match(argv, ws, ws) is None


def test_match_reports_footprint(tmp_path: Path, builtins: ToolLibrary) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    found = ToolMatcher(builtins).match(["mv", "-T", "a", "b"], ws, ws)
    assert found is not None
    assert found.writes == {Key.parse("dir:a"), Key.parse("dir:b")} and found.reads == set()
