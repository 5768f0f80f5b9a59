"""``fleetgate vehicles import | show | link``: the vehicle inventory from the command line.

Settings: ``FLEETGATE_CASSANDRA__*`` (see :class:`processors.settings.ProcessorSettings`).
The Cassandra driver is imported only when a command runs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from fleetgate.errors import UserError
from fleetgate.settings import load_settings
from processors.settings import ProcessorSettings
from schemas.ids import InvalidIdentifier, validate_app_id, validate_vin

if TYPE_CHECKING:
    from processors.inventory.importer import ImportReport
    from processors.store.session import CassandraSession

T = TypeVar("T")
MAX_ERRORS_SHOWN = 50

vehicles_app = typer.Typer(
    name="vehicles",
    help="The vehicle inventory: import, show, link to apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _settings() -> ProcessorSettings:
    from fleetgate.logs import configure_logging

    settings = load_settings(ProcessorSettings)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return settings


def _vin(text: str) -> str:
    try:
        return validate_vin(text)
    except InvalidIdentifier as exc:
        raise UserError(str(exc)) from None


@asynccontextmanager
async def _session(settings: ProcessorSettings) -> AsyncIterator[CassandraSession]:
    from processors.runtime import connect_session

    session = await connect_session(settings)
    try:
        yield session
    finally:
        await session.close()


def _run(settings: ProcessorSettings, work: Callable[[CassandraSession], Awaitable[T]]) -> T:
    from fleetgate.logs import quiet_drivers
    from processors.store.session import StoreError

    async def main() -> T:
        async with _session(settings) as session:
            return await work(session)

    try:
        with quiet_drivers():  # the driver's retry warnings would repeat the one-line error
            return asyncio.run(main())
    except StoreError as exc:
        raise UserError(f"Cassandra: {exc}", exit_code=3) from None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@vehicles_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="a .csv (vin,model,year,region,tags) or .jsonl")],
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="writes in flight")] = 64,
) -> None:
    """Import vehicles; invalid rows are reported by line number, valid rows are kept.

    Exits 1 when some rows were invalid.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from processors.inventory.importer import count_lines, import_file
    from processors.store.repo_inventory import InventoryRepository

    settings = _settings()
    if not file.is_file():
        raise UserError(f"{file}: no such file")
    total = count_lines(file)
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("import", total=total)

        async def work(session: CassandraSession) -> ImportReport:
            repo = InventoryRepository(session=session, keyspace=settings.cassandra.keyspace)
            return await import_file(
                path=file,
                repo=repo,
                now_ms=_now_ms(),
                concurrency=concurrency,
                progress=lambda line: bar.update(task, completed=line),
            )

        report = _run(settings, work)
    typer.echo(f"imported {report.imported} vehicles from {file}")
    if report.errors:
        for error in report.errors[:MAX_ERRORS_SHOWN]:
            typer.echo(f"{file}: line {error.line}: {error.reason}", err=True)
        more = len(report.errors) - MAX_ERRORS_SHOWN
        if more > 0:
            typer.echo(f"... and {more} more invalid rows", err=True)
        typer.echo(f"{len(report.errors)} invalid rows skipped", err=True)
        raise SystemExit(1)


@vehicles_app.command("show")
def show_command(
    vin: Annotated[str, typer.Argument(help="the vehicle's VIN")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """A vehicle: inventory data, ECUs, linked apps, its shadow and latest commands."""
    from processors.store.repo_commands import CommandRepository
    from processors.store.repo_common import to_ms
    from processors.store.repo_inventory import InventoryRepository
    from processors.store.repo_shadow import ShadowRepository

    vin = _vin(vin)
    settings = _settings()
    keyspace = settings.cassandra.keyspace

    async def work(session: CassandraSession) -> dict[str, Any] | None:
        vehicle = await InventoryRepository(session=session, keyspace=keyspace).get(vin=vin)
        if vehicle is None:
            return None
        loaded = await ShadowRepository(session=session, keyspace=keyspace).load(vin=vin)
        commands = await CommandRepository(session=session, keyspace=keyspace).recent(vin=vin)
        return {
            "vin": vehicle.vin,
            "model": vehicle.model,
            "year": vehicle.year,
            "region": vehicle.region,
            "tags": sorted(vehicle.tags),
            "ecus": {n: {"hw": e.hw, "sw": e.sw} for n, e in sorted(vehicle.ecus.items())},
            "apps": sorted(vehicle.apps),
            "imported_at": vehicle.imported_at,
            "updated_at": vehicle.updated_at,
            "shadow": None
            if loaded.stored_version is None
            else {
                "version": loaded.shadow.version,
                "online": loaded.shadow.online,
                "ts": loaded.shadow.ts,
            },
            "commands": [
                {
                    "command_id": c["command_id"],
                    "app_id": c["app_id"],
                    "name": c["name"],
                    "status": str(c["status"]).lower(),
                    "created_at": to_ms(c["created_at"]),
                }
                for c in commands
            ],
        }

    info = _run(settings, work)
    if info is None:
        raise UserError(f"unknown vehicle {vin} (import it with `fleetgate vehicles import`)")
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(_render(info))


def _render(info: dict[str, Any]) -> str:
    lines = [f"vehicle {info['vin']}"]
    for key in ("model", "year", "region"):
        lines.append(f"  {key + ':':<9} {info[key] if info[key] is not None else '-'}")
    lines.append(f"  {'tags:':<9} {', '.join(info['tags']) or '-'}")
    lines.append(f"  {'apps:':<9} {', '.join(info['apps']) or '-'}")
    lines.append("  ecus:" + ("" if info["ecus"] else "     -"))
    for name, ecu in info["ecus"].items():
        lines.append(f"    {name:<12} hw {ecu['hw'] or '-':<12} sw {ecu['sw'] or '-'}")
    shadow = info["shadow"]
    if shadow is None:
        lines.append("  shadow:   none yet")
    else:
        online = {True: "online", False: "offline", None: "never seen"}[shadow["online"]]
        lines.append(f"  shadow:   version {shadow['version']}, {online}")
    lines.append("  commands:" + ("" if info["commands"] else " none"))
    for c in info["commands"]:
        lines.append(f"    {c['command_id']}  {c['name']:<20} {c['status']:<10} app {c['app_id']}")
    return "\n".join(lines)


@vehicles_app.command("link")
def link_command(
    vin: Annotated[str, typer.Argument(help="the vehicle's VIN")],
    app_id: Annotated[str, typer.Argument(help="the app that may act on it")],
) -> None:
    """Let an app send commands to a vehicle and change its desired state."""
    from processors.store.repo_inventory import InventoryRepository

    vin = _vin(vin)
    try:
        app_id = validate_app_id(app_id)
    except InvalidIdentifier as exc:
        raise UserError(str(exc)) from None
    settings = _settings()

    async def work(session: CassandraSession) -> bool:
        repo = InventoryRepository(session=session, keyspace=settings.cassandra.keyspace)
        if await repo.apps_of(vin=vin) is None:
            return False
        await repo.link(vin=vin, app_id=app_id, now_ms=_now_ms())
        return True

    if not _run(settings, work):
        raise UserError(f"unknown vehicle {vin} (import it with `fleetgate vehicles import`)")
    typer.echo(f"linked app {app_id} to vehicle {vin}")
