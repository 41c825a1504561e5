"""The shell side of coagent. `classify` maps a command line to an op footprint."""

from coagent_cli.shell.classifier import (Classification, FoundTool, ToolMatch, ToolMatcher,
                                          classify)

__all__ = ["Classification", "FoundTool", "ToolMatch", "ToolMatcher", "classify"]
