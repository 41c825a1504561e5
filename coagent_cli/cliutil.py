"""What every `coagent` command shares: errors become one line on stderr, never a traceback."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import typer

from coagent_cli.errors import CoagentError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2


def clean_errors(fn: F) -> F:
    """A CoagentError (bad input, no daemon, a refused request) becomes one line and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CoagentError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper  # type: ignore[return-value]
