"""``fleetgate sim``: a simulated fleet against a running broker, with a live view and a
JSON summary (CONTRACT §5).

The lead registers it: ``from simulator.cli import register; register(app)``.
``python -m simulator ...`` runs the same command on its own.

Exit status: 0 when no vehicle failed; 1 when some failed to connect; 3 when none could
(the broker unreachable or refusing everyone). The summary is printed (stdout) and written
(``--json``) in every case, Ctrl-C included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from fleetgate.errors import ServiceUnavailable, UserError
from simulator.settings import FLOOD, SimSettings


def load_settings(*, home: Path | None = None, **overrides: Any) -> SimSettings:
    """Environment (``FLEETGATE_SIM__...``) overridden by the command line, validated."""
    try:
        base = SimSettings()
        given = {k: v for k, v in overrides.items() if v is not None}
        merged = base.sim.model_dump() | given
        return SimSettings(sim=merged, home=home if home is not None else base.home)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"] if part != "sim")
        raise UserError(f"sim setting {where}: {first['msg']}") from None


def _summary_line(summary: dict[str, Any]) -> str:
    errors = ", ".join(f"{k} {v}" for k, v in summary["errors"].items()) or "no errors"
    return (
        f"{summary['connected']} of {summary['vehicles']} vehicles connected, "
        f"{summary['failed']} failed ({errors})"
    )


def sim(
    vehicles: Annotated[
        int | None, typer.Option("--vehicles", "-n", help="how many vehicles (default 100)")
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", help="telemetry per vehicle per second (default 1)")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", help="seconds from the start, then stop (default: Ctrl-C)"),
    ] = None,
    ramp: Annotated[
        float | None, typer.Option("--ramp", help="new connections per second (default 200)")
    ] = None,
    broker: Annotated[
        str | None, typer.Option("--broker", help="HOST:PORT (default 127.0.0.1:8883)")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help=f"city, highway, mixed (default), delivery, idle; {FLOOD}: publish "
            "pre-encoded telemetry as fast as QoS 1 allows",
        ),
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="write the summary (JSON) to this file")
    ] = None,
    qos: Annotated[int | None, typer.Option("--qos", help="QoS of telemetry: 0 or 1")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="processes (default: one per core)")
    ] = None,
    window: Annotated[
        int | None, typer.Option("--window", help="flood: messages in flight per connection")
    ] = None,
    first: Annotated[
        int | None, typer.Option("--first", help="number of the first vehicle (VIN)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no live view")] = False,
) -> None:
    """Simulate a fleet: every vehicle its own certificate and VIN, mutual TLS, telemetry,
    commands, shadow, reconnects. Prints the JSON summary at the end."""
    settings = load_settings(
        vehicles=vehicles,
        rate_hz=rate,
        duration_s=duration,
        ramp_per_s=ramp,
        broker=broker,
        profile=profile,
        qos=qos,
        workers=workers,
        window=window,
        first=first,
    )
    if json_file is not None and not json_file.parent.is_dir():
        raise UserError(f"cannot write {json_file}: {json_file.parent} is not a directory")
    from fleetgate.logs import configure_logging
    from simulator.progress import make_view
    from simulator.supervisor import prepare_certificates, run_fleet

    configure_logging(level=settings.log_level, fmt=settings.log_format)
    if not quiet:
        typer.echo(f"fleetgate sim: preparing {settings.sim.vehicles} vehicles", err=True)
    issued = prepare_certificates(settings)
    if issued and not quiet:
        typer.echo(f"fleetgate sim: issued {issued} vehicle certificates", err=True)
    view = make_view(total=settings.sim.vehicles, title="fleetgate sim", enabled=not quiet)
    summary = run_fleet(settings, view=view)
    text = json.dumps(summary, indent=2)
    typer.echo(text)
    if json_file is not None:
        try:
            json_file.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {json_file}: {exc.strerror or exc}") from None
    if summary["failed"] and not summary["connected"]:
        raise ServiceUnavailable(
            f"no vehicle could connect to {settings.sim.broker}: " + _summary_line(summary)
        )
    if summary["failed"]:
        raise UserError(_summary_line(summary), exit_code=1)


def register(app: typer.Typer) -> None:
    """Add ``sim`` to the ``fleetgate`` command."""
    app.command("sim")(sim)


def main(argv: list[str] | None = None) -> None:
    """``python -m simulator ...``: the sim command alone."""
    from fleetgate.cli.main import run

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    run(app, argv)
