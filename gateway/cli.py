"""``fleetgate gateway``: one gateway instance in the foreground, as a deployment runs it;
Ctrl-C (or SIGTERM) drains it and stops it cleanly.

The lead registers it: ``from gateway.cli import register; register(app)``.
``python -m gateway`` runs the same command on its own.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from fleetgate.errors import UserError
from fleetgate.logs import configure_logging
from gateway.settings import GatewaySettings


def load_settings(
    *,
    home: Path | None = None,
    shared_group: str | None = None,
    client_id: str | None = None,
    metrics_port: int | None = None,
    slice_: tuple[int, int] | None = None,
) -> GatewaySettings:
    """Environment (``FLEETGATE_…``) overridden by the command line, validated once."""
    try:
        base = GatewaySettings()
        overrides: dict[str, Any] = {
            k: v
            for k, v in (
                ("shared_group", shared_group),
                ("client_id", client_id),
                ("metrics_port", metrics_port),
            )
            if v is not None
        }
        if slice_ is not None:
            overrides |= {"slice": slice_[0], "slices": slice_[1]}
        values = base.model_dump(exclude_unset=True)
        values["gateway"] = base.gateway.model_dump(exclude_unset=True) | overrides
        if home is not None:
            values["home"] = home
        return GatewaySettings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        env = "FLEETGATE_" + "__".join(str(p).upper() for p in first["loc"])
        raise UserError(f"invalid gateway setting {where} ({env}): {first['msg']}") from None


def parse_slice(text: str) -> tuple[int, int]:
    """``K/N`` (``--slice 0/2``) as (K, N); a bad value is one line."""
    k, sep, n = text.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit():
        raise UserError(f"--slice {text!r}: expected K/N, e.g. 0/2 (slice 0 of 2 instances)")
    return int(k), int(n)


def gateway(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="fleetgate's home (env FLEETGATE_HOME, default ./.fleetgate)"),
    ] = None,
    shared_group: Annotated[
        str | None,
        typer.Option(
            "--shared-group",
            help="split uplink load with $share/<group>/… subscriptions (Mosquitto)",
            show_default=False,
        ),
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option("--client-id", help="MQTT client id (default: the certificate name)"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Prometheus /metrics port (default 9464; 0: any)"),
    ] = None,
    slice_: Annotated[
        str | None,
        typer.Option(
            "--slice",
            metavar="K/N",
            help="uplink slice K of N instances (each owns the vehicles of its slice; per-VIN "
            "order holds); certificate <name>-K unless FLEETGATE_MQTT__CLIENT_NAME names one",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the MQTT<->Kafka gateway in the foreground (at-least-once both ways)."""
    settings = load_settings(
        home=home,
        shared_group=shared_group,
        client_id=client_id,
        metrics_port=metrics_port,
        slice_=parse_slice(slice_) if slice_ is not None else None,
    )
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    asyncio.run(serve(settings))


async def serve(settings: GatewaySettings) -> None:
    """Run until SIGINT/SIGTERM, then drain."""
    from gateway.service import Gateway  # heavy imports only when it runs

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    gw = Gateway(settings=settings)
    announcer = asyncio.create_task(_announce(gw, settings))
    try:
        await gw.run(stop=stop)
    finally:
        announcer.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _announce(gw: Any, settings: GatewaySettings) -> None:
    await gw.ready.wait()
    metrics = f"; metrics on :{gw.metrics_port}/metrics" if gw.metrics_port else ""
    typer.echo(
        f"fleetgate gateway: MQTT {settings.mqtt.host}:{settings.mqtt.port} <-> Kafka "
        f"{settings.kafka.bootstrap} ({settings.kafka.topic_prefix}*){metrics}; Ctrl-C stops it",
        err=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``gateway`` to the ``fleetgate`` command."""
    app.command("gateway")(gateway)


def main(argv: list[str] | None = None) -> None:
    """``python -m gateway ...``: the gateway command alone."""
    from fleetgate.cli.main import run

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    run(app, argv)
