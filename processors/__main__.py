"""``python -m processors``: one worker in the foreground, as ``fleetgate processors``."""

from __future__ import annotations

import sys

import typer

from fleetgate.errors import UserError
from processors.cli import processors_command


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(processors_command)
    try:
        app()
    except UserError as exc:
        typer.echo(f"fleetgate processors: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
