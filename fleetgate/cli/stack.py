"""``fleetgate up | down | status``: the whole stack on this machine."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer

from fleetgate.logs import configure_logging, get_logger
from fleetgate.settings import load_settings
from fleetgate.stack.settings import BrokerKind, StackSettings

log = get_logger(__name__)


def _settings(**overrides: object) -> StackSettings:
    return load_settings(StackSettings, **overrides)


async def bring_up(settings: StackSettings) -> None:
    """Start everything, wait for Ctrl-C / SIGTERM, stop everything."""
    from fleetgate.stack import components as c
    from fleetgate.stack import orchestrator as orch
    from fleetgate.stack import prereq
    from fleetgate.stack.setup import ensure_pki, keep_pki_fresh, prepare_data

    started = time.monotonic()
    stop = asyncio.Event()
    orch.install_stop_signals(stop)
    orch.refuse_if_running(settings)
    h = settings.host
    prereq.require_free_ports(
        {
            "FLEETGATE_BROKER_PORT": (h, settings.broker_port),
            "FLEETGATE_KAFKA_PORT": (h, settings.kafka_port),
            "FLEETGATE_KAFKA_CONTROLLER_PORT": (h, settings.kafka_controller_port),
            "FLEETGATE_CASSANDRA_PORT": (h, settings.cassandra_port),
            "FLEETGATE_CASSANDRA_STORAGE_PORT": (h, settings.cassandra_storage_port),
            "FLEETGATE_GATEWAY_METRICS_PORT": (h, settings.gateway_metrics_port),
            "FLEETGATE_PROCESSORS_METRICS_PORT": (h, settings.processors_metrics_port),
            "FLEETGATE_PROCESSORS_STATE_METRICS_PORT": (h, settings.processors_state_metrics_port),
        }
    )
    java = prereq.require_java()
    kafka_lib, cassandra_lib = await asyncio.to_thread(c.resolve_jars, settings)
    await asyncio.to_thread(ensure_pki, settings.home)
    upkeep = asyncio.create_task(keep_pki_fresh(settings.home))
    stack = orch.Stack(settings)
    try:
        await stack.start_wave(
            [
                c.kafka_component(settings, java=java, lib_dir=kafka_lib),
                c.cassandra_component(settings, java=java, lib_dir=cassandra_lib),
            ]
        )
        await prepare_data(settings)
        await stack.start_wave([c.broker_component(settings)])
        await stack.start_wave(c.service_components(settings))
        if settings.vehicles:
            await stack.start_wave(
                [c.fleet_component(settings, log=settings.logs_dir / "fleet.log")]
            )
        stack.mark_ready()
        log.info("stack up", seconds=round(time.monotonic() - started, 1), home=str(settings.home))
        typer.echo(
            f"fleetgate is up in {time.monotonic() - started:.1f}s: "
            f"broker {h}:{settings.broker_port} ({settings.broker_kind}), "
            f"Kafka {settings.kafka_bootstrap}, Cassandra {h}:{settings.cassandra_port}. "
            "Ctrl-C or `fleetgate down` stops it."
        )
        await stack.watch(stop)
    finally:
        upkeep.cancel()
        stack.stop()


def up(
    broker: Annotated[
        BrokerKind | None, typer.Option(help="amqtt (embedded, default) or mosquitto")
    ] = None,
    vehicles: Annotated[
        int | None, typer.Option(min=0, help="simulated demo vehicles (0: none)")
    ] = None,
) -> None:
    """Run the whole stack on this machine in the foreground; Ctrl-C stops it."""
    settings = _settings(broker_kind=broker, vehicles=vehicles)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    asyncio.run(bring_up(settings))


def down() -> None:
    """Stop the stack that `fleetgate up` started (from any shell)."""
    from fleetgate.stack import orchestrator

    settings = _settings()
    stopped = orchestrator.down(settings)
    typer.echo("stopped: " + ", ".join(stopped) if stopped else "no stack is running")


def status(
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show each component of the running stack; exit 0 only when every one answers."""
    from fleetgate.stack.health import check, render

    settings = _settings()
    report = asyncio.run(check(settings))
    render(report, json_out=json_out)
    if not report.healthy:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(status)
    app.command()(setup)


def setup() -> None:
    """Create what a deployment needs, idempotently: the PKI (if none), Kafka topics and the
    Cassandra schema, on the Kafka and Cassandra named by the settings."""
    from fleetgate.stack.setup import create_topics, ensure_pki, migrate

    settings = _settings()  # uses FLEETGATE_KAFKA__BOOTSTRAP and FLEETGATE_CASSANDRA__HOSTS
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    ensure_pki(settings.home)

    async def run() -> None:
        await create_topics(conn=settings.kafka)
        await migrate(conn=settings.cassandra)

    asyncio.run(run())
    typer.echo("set-up done: PKI, Kafka topics, Cassandra schema")
