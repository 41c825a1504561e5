"""Declared tools: YAML specs with footprints, inverses and redo; the library; execution.

    spec.py       ToolSpec (pydantic), the cross-field checks
    loader.py     YAML -> ToolSpec, errors naming file, line and field
    template.py   `{param}` templates, shell quoting, where placeholders may stand
    render.py     binding params, confining paths to the workspace, rendering footprints
    images.py     before-images of file/dir keys and restoring them
    execute.py    invoke / undo / redo against a real workspace
    library.py    built-in, user and workspace layers; overrides; version; reload
    watcher.py    hot reload with watchdog
    matcher.py    lifting raw argv onto a declared tool (`match` patterns)
    check.py      round-trip, footprint and injection checks in a scratch copy
    cli.py        `coagent tools ...`
"""

from coagent_cli.tools.execute import ToolResult, invoke, redo, undo
from coagent_cli.tools.library import ToolEntry, ToolLibrary
from coagent_cli.tools.loader import SpecLoadError, load_spec_file, load_spec_text
from coagent_cli.tools.matcher import ToolMatch, ToolMatcher
from coagent_cli.tools.spec import ParamSpec, ToolSpec

__all__ = ["ParamSpec", "SpecLoadError", "ToolEntry", "ToolLibrary", "ToolMatch", "ToolMatcher",
           "ToolResult", "ToolSpec", "invoke", "load_spec_file", "load_spec_text", "redo",
           "undo"]
