"""``fleetgate processors`` (one worker in the foreground) and ``fleetgate vehicles``.

The root command registers both with :func:`register`; nothing heavy is imported until a
command runs.
"""

from __future__ import annotations

import typer

from fleetgate.settings import load_settings
from processors.inventory.cli import vehicles_app
from processors.settings import ProcessorSettings


def processors_command(
    role: str | None = typer.Option(
        None,
        "--role",
        help="all (default): every agent; commands: remote commands only; state: shadow and "
        "telemetry. Run 'commands' + 'state' workers to keep commands fast under heavy telemetry "
        "(FLEETGATE_PROCESSORS__ROLE).",
    ),
) -> None:
    """Run a stream-processor worker (shadow, commands, telemetry) until Ctrl-C.

    Start several, on one machine or many: workers of one role share the Kafka partitions (by
    VIN). Settings: FLEETGATE_KAFKA__*, FLEETGATE_CASSANDRA__*, FLEETGATE_PROCESSORS__*.
    """
    from fleetgate.errors import UserError
    from fleetgate.logs import configure_logging
    from processors.settings import ROLE_AGENTS
    from processors.worker import run_foreground

    if role is not None and role not in ROLE_AGENTS:
        raise UserError(f"--role must be one of {', '.join(ROLE_AGENTS)} (got {role!r})")
    overrides = {"processors": {"role": role}} if role is not None else {}
    settings = load_settings(ProcessorSettings, **overrides)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    run_foreground(settings)


def register(app: typer.Typer) -> None:
    """Add ``fleetgate processors`` and ``fleetgate vehicles`` to the root command."""
    app.command("processors")(processors_command)
    app.add_typer(vehicles_app, name="vehicles")
