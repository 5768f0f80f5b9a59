"""The ``fleetgate`` command: one wiring point; every sub-command imports its service lazily."""

from __future__ import annotations

import sys

import typer

from fleetgate.errors import UserError

app = typer.Typer(
    name="fleetgate",
    help="fleetgate: an MQTT-centric gateway between a vehicle fleet and the cloud.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from certs.cli import app as certs_app
    from fleetgate.cli import bench, schemas_cmd, stack
    from processors.store import cli as store_cli

    stack.register(app)
    app.add_typer(certs_app, name="certs", help="The PKI: CAs, certificates, revocation.")
    store_cli.register(app)
    schemas_cmd.register(app)
    bench.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; user mistakes become one line and exit code 2."""
    _register()
    try:
        app(args=argv)  # click's standalone mode: usage errors print usage, exit 2
    except UserError as exc:
        typer.echo(f"fleetgate: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("fleetgate: interrupted", err=True)
        sys.exit(130)
