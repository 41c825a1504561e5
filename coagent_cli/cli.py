"""The `coagent` command line (typer). Thin: builds parts from config and calls them."""

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.command()
def version() -> None:
    """Print the coagent version."""
    from coagent_cli import __version__

    typer.echo(__version__)


def main() -> None:
    app()
