"""``fleetgate broker [--broker amqtt|mosquitto] [--host H] [--port P]``: one broker in the
foreground, as a deployment runs it; Ctrl-C (or SIGTERM) stops it cleanly.

The lead registers it: ``from broker.cli import register; register(app)``. ``python -m broker``
runs the same command on its own.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from broker.runstate import RunState
from broker.settings import BrokerSettings
from fleetgate.errors import UserError
from fleetgate.logs import configure_logging


def load_settings(
    *,
    kind: str | None = None,
    host: str | None = None,
    port: int | None = None,
    home: Path | None = None,
) -> BrokerSettings:
    """Environment (``FLEETGATE_BROKER__...``) overridden by the command line, validated."""
    try:
        base = BrokerSettings()
        overrides: dict[str, Any] = {
            k: v for k, v in (("kind", kind), ("host", host), ("port", port)) if v is not None
        }
        merged = base.broker.model_dump() | overrides
        return BrokerSettings(broker=merged, home=home if home is not None else base.home)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(f"broker setting {where}: {first['msg']}") from None


def broker(
    kind: Annotated[
        str | None,
        typer.Option("--broker", help="amqtt (embedded, default) or mosquitto", show_default=False),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="address to listen on (default 127.0.0.1)")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="TLS port (default 8883; 0: any free port)")
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="fleetgate's home (env FLEETGATE_HOME, default ./.fleetgate)"),
    ] = None,
) -> None:
    """Run the MQTT broker (mutual TLS, per-identity ACL) in the foreground."""
    settings = load_settings(kind=kind, host=host, port=port, home=home)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    asyncio.run(_serve(settings))


def _announce(state: RunState) -> None:
    typer.echo(
        f"fleetgate broker: {state.broker} listening on {state.host}:{state.port} "
        "(mutual TLS); Ctrl-C stops it",
        err=True,
    )


async def _serve(settings: BrokerSettings) -> None:
    from broker.service import run_broker  # heavy imports (amqtt) only when it runs

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_broker(settings=settings, stop=stop, on_ready=_announce)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {settings.broker.host}:{settings.broker.port}: {exc.strerror or exc}"
        ) from None
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def register(app: typer.Typer) -> None:
    """Add ``broker`` to the ``fleetgate`` command."""
    app.command("broker")(broker)


def main(argv: list[str] | None = None) -> None:
    """``python -m broker ...``: the broker command alone."""
    from fleetgate.cli.main import run

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    run(app, argv)
