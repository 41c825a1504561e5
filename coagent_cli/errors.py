"""The one exception tree of coagent.

Every error coagent raises on purpose derives from CoagentError, and also from the
builtin it most resembles, so callers may catch either. Errors of libraries we use
(sqlite3, pexpect, openai, OSError) are translated at the edge of the module that
calls them; they never leak through.

    CoagentError
    ├── UsageError (ValueError)          bad input from a person: a flag, a plan, a path
    │   ├── InvalidKey                   a footprint key that cannot be normalised
    │   └── OutsideWorkspace             a path that escapes the workspace
    ├── ProtocolError (RuntimeError)     an event the protocol core cannot accept now
    ├── WireError (ValueError)           a malformed or refused message on the socket
    ├── ExecutionError (RuntimeError)    an effect on the live state could not be performed
    ├── JournalError (RuntimeError)      the journal or blob store failed
    └── ToolSpecError (ValueError)       a tool spec that does not validate

Each error carries a stable `code` (a short snake_case string) so it can cross the
wire as {code, message} and be re-raised on the other side.
"""

from __future__ import annotations


class CoagentError(Exception):
    """Root of every error coagent raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class UsageError(CoagentError, ValueError):
    code = "usage"


class InvalidKey(UsageError):
    code = "invalid_key"


class OutsideWorkspace(UsageError):
    code = "outside_workspace"


class ProtocolError(CoagentError, RuntimeError):
    code = "protocol"


class WireError(CoagentError, ValueError):
    code = "wire"


class ExecutionError(CoagentError, RuntimeError):
    code = "execution"


class JournalError(CoagentError, RuntimeError):
    code = "journal"


class ToolSpecError(CoagentError, ValueError):
    code = "tool_spec"
