"""``fleetgate db migrate | status``: the keyspace's schema, from the command line.

Settings come from ``FLEETGATE_CASSANDRA__*`` (see :class:`StoreSettings`); ``--keyspace``
overrides the keyspace. The Cassandra driver is imported only when a command runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from fleetgate import settings as fleetgate_settings
from fleetgate.errors import UserError
from processors.store.schema import Replication, check_keyspace
from processors.store.settings import StoreSettings

if TYPE_CHECKING:
    from processors.store.session import CassandraSession

db_app = typer.Typer(
    name="db",
    help="The Cassandra schema: apply migrations, show which are applied.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

KeyspaceOption = Annotated[
    str | None,
    typer.Option("--keyspace", help="Keyspace to use (default: FLEETGATE_CASSANDRA__KEYSPACE)."),
]


def load_settings() -> StoreSettings:
    """The settings from the environment; a bad value is a one-line :class:`UserError`."""
    return fleetgate_settings.load_settings(StoreSettings)


@asynccontextmanager
async def _connected(settings: StoreSettings) -> AsyncIterator[CassandraSession]:
    from processors.store.session import CassandraSession

    conn = settings.cassandra
    session = CassandraSession()
    await session.connect(
        hosts=conn.hosts,
        port=conn.port,
        keyspace=None,
        local_dc=conn.local_dc,
        timeout_s=settings.connect_timeout_s,
    )
    try:
        yield session
    finally:
        await session.close()


async def _migrate(settings: StoreSettings, keyspace: str) -> list[str]:
    from processors.store.migrate import migrate

    replication = Replication.from_connection(settings.cassandra)
    replication.options()  # a bad replication setting fails before connecting
    async with _connected(settings) as session:
        return await migrate(session=session, keyspace=keyspace, replication=replication)


async def _status(settings: StoreSettings, keyspace: str) -> list[tuple[str, bool, str]]:
    from processors.store.migrate import status

    async with _connected(settings) as session:
        rows = await status(session=session, keyspace=keyspace)
    return [(r.label, r.applied, r.applied_at.isoformat() if r.applied_at else "") for r in rows]


@db_app.command("migrate")
def migrate_command(keyspace: KeyspaceOption = None) -> None:
    """Create the keyspace if needed and apply every pending migration (idempotent)."""
    from processors.store.session import StoreError

    settings = load_settings()
    ks = check_keyspace(keyspace or settings.cassandra.keyspace)
    try:
        done = asyncio.run(_migrate(settings, ks))
    except StoreError as exc:
        raise UserError(f"migrating {ks} failed: {exc}", exit_code=3) from None
    if done:
        typer.echo(f"{ks}: applied {', '.join(done)}")
    else:
        typer.echo(f"{ks}: schema up to date, nothing to apply")


@db_app.command("status")
def status_command(keyspace: KeyspaceOption = None) -> None:
    """List the migrations and whether each is applied; exit 1 while any is pending."""
    from processors.store.session import StoreError

    settings = load_settings()
    ks = check_keyspace(keyspace or settings.cassandra.keyspace)
    try:
        rows = asyncio.run(_status(settings, ks))
    except StoreError as exc:
        raise UserError(f"reading the schema of {ks} failed: {exc}", exit_code=3) from None
    typer.echo(f"keyspace {ks}:")
    for label, is_applied, when in rows:
        typer.echo(f"  {label:<32} {'applied ' + when if is_applied else 'pending'}")
    if not all(is_applied for _, is_applied, _ in rows):
        # SystemExit, not typer.Exit: the root app runs click with standalone_mode=False,
        # where click returns typer.Exit's code instead of exiting with it.
        raise SystemExit(1)


def register(app: typer.Typer) -> None:
    """Add ``fleetgate db`` to the root command."""
    app.add_typer(db_app, name="db")
