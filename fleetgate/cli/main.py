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
    from broker import cli as broker_cli
    from certs.cli import app as certs_app
    from fleetgate.cli import bench, schemas_cmd, stack
    from gateway import cli as gateway_cli
    from processors import cli as processors_cli
    from processors.store import cli as store_cli
    from simulator import cli as sim_cli

    stack.register(app)
    app.add_typer(certs_app, name="certs", help="The PKI: CAs, certificates, revocation.")
    store_cli.register(app)
    broker_cli.register(app)
    processors_cli.register(app)
    gateway_cli.register(app)
    sim_cli.register(app)
    schemas_cmd.register(app)
    bench.register(app)


def _click_exception() -> type[Exception]:
    """Typer's (vendored) click exception base: usage errors, bad parameters."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "ClickException" and issubclass(cls, Exception):
            return cls
    return typer.BadParameter


def run(cli: typer.Typer, argv: list[str] | None = None) -> None:
    """Run a typer app as a command: a user's mistake is one line on stderr (exit 2, or the
    error's own code), Ctrl-C exits 130, and a command's exit code is kept."""
    click_exception = _click_exception()
    try:
        result = cli(args=argv, standalone_mode=False)
    except UserError as exc:
        typer.echo(f"fleetgate: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click_exception as exc:
        message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "fleetgate"
        typer.echo(f"{where}: error: {message} (see `{where} --help`)", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("fleetgate: interrupted", err=True)
        sys.exit(130)
    if isinstance(result, int) and result:
        sys.exit(result)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fleetgate`` console script."""
    _register()
    run(app, argv)
