"""Apply the versioned migrations in ``processors/store/migrations`` to a keyspace.

``migrate`` creates the keyspace (``IF NOT EXISTS``; an existing keyspace's replication is
never changed, only reported), takes a short lease so two starting services do not run DDL
at the same time, applies what ``schema_migrations`` does not list yet, and records each
version once it is applied. Running it again is a no-op.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from fleetgate.logs import get_logger
from processors.store.schema import (
    Migration,
    MigrationError,
    Replication,
    check_keyspace,
    create_keyspace_cql,
    order_migrations,
    pending_migrations,
    render_statements,
    same_replication,
)
from processors.store.session import CassandraSession, applied

_log = get_logger(__name__)
# Queries below put the keyspace into the text (CQL cannot bind it); every public entry point
# validates it first with check_keyspace, hence the S608 waivers.
_PACKAGE = "processors.store.migrations"
_DDL_TIMEOUT_S = 60.0
_LEASE_TTL_S = 120


def load_migrations() -> list[Migration]:
    """The migrations shipped with this fleetgate, in version order."""
    root = resources.files(_PACKAGE)
    files = [
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in root.iterdir()
        if entry.is_file() and entry.name.endswith(".cql")
    ]
    return order_migrations(files)


def _bookkeeping_cql(keyspace: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations ("
        " version text PRIMARY KEY, name text, checksum text, applied_at timestamp,"
        " applied_by text)",
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_lock ("
        " name text PRIMARY KEY, owner text, acquired_at timestamp)",
    ]


async def _ddl(session: CassandraSession, statement: str) -> None:
    await session.execute(query=statement, prepared=False, timeout_s=_DDL_TIMEOUT_S)


async def _replication_of(session: CassandraSession, keyspace: str) -> dict[str, str] | None:
    rows = await session.execute(
        query="SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
        params=(keyspace,),
    )
    return dict(rows[0]["replication"]) if rows else None


async def _table_exists(session: CassandraSession, keyspace: str, table: str) -> bool:
    rows = await session.execute(
        query="SELECT table_name FROM system_schema.tables "
        "WHERE keyspace_name = ? AND table_name = ?",
        params=(keyspace, table),
    )
    return bool(rows)


async def applied_versions(*, session: CassandraSession, keyspace: str) -> dict[str, str]:
    """``version -> checksum`` of the migrations recorded in the keyspace (empty if none)."""
    check_keyspace(keyspace)
    if not await _table_exists(session, keyspace, "schema_migrations"):
        return {}
    rows = await session.execute(
        query=f"SELECT version, checksum FROM {keyspace}.schema_migrations"  # noqa: S608
    )
    return {str(r["version"]): str(r["checksum"]) for r in rows}


async def _acquire_lease(
    session: CassandraSession, keyspace: str, owner: str, wait_s: float
) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        rows = await session.execute(
            query=f"INSERT INTO {keyspace}.schema_lock (name, owner, acquired_at) "  # noqa: S608
            f"VALUES ('migrate', ?, ?) IF NOT EXISTS USING TTL {_LEASE_TTL_S}",
            params=(owner, datetime.now(UTC)),
        )
        if applied(rows):
            return
        holder = rows[0].get("owner") if rows else "?"
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"another migration holds the schema lock of {keyspace} ({holder}); "
                f"retry, or wait {_LEASE_TTL_S}s for it to expire"
            )
        _log.info("waiting for the schema lock", keyspace=keyspace, holder=holder)
        await asyncio.sleep(1.0)


async def _release_lease(session: CassandraSession, keyspace: str, owner: str) -> None:
    await session.execute(
        query=f"DELETE FROM {keyspace}.schema_lock WHERE name = 'migrate' IF owner = ?",  # noqa: S608
        params=(owner,),
    )


async def migrate(
    *,
    session: CassandraSession,
    keyspace: str,
    replication: Replication,
    migrations: list[Migration] | None = None,
    lock_wait_s: float = 60.0,
) -> list[str]:
    """Bring ``keyspace`` up to date; return the labels (``0001_initial``) applied now."""
    check_keyspace(keyspace)
    available = load_migrations() if migrations is None else migrations
    current = await _replication_of(session, keyspace)
    if current is None:
        await _ddl(session, create_keyspace_cql(keyspace, replication))
        _log.info("keyspace created", keyspace=keyspace, replication=replication.clause())
    elif not same_replication(current, replication):
        _log.warning(
            "keyspace replication differs from the settings; not changing it",
            keyspace=keyspace,
            current=current,
            wanted=replication.options(),
        )
    for statement in _bookkeeping_cql(keyspace):
        await _ddl(session, statement)

    owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
    await _acquire_lease(session, keyspace, owner, lock_wait_s)
    done: list[str] = []
    try:
        todo = pending_migrations(
            available, await applied_versions(session=session, keyspace=keyspace)
        )
        for migration in todo:
            started = time.monotonic()
            for statement in render_statements(migration, keyspace=keyspace):
                await _ddl(session, statement)
            await session.execute(
                query=f"INSERT INTO {keyspace}.schema_migrations "  # noqa: S608
                "(version, name, checksum, applied_at, applied_by) VALUES (?, ?, ?, ?, ?)",
                params=(
                    migration.version,
                    migration.name,
                    migration.checksum,
                    datetime.now(UTC),
                    owner,
                ),
            )
            done.append(migration.label)
            _log.info(
                "migration applied",
                keyspace=keyspace,
                migration=migration.label,
                seconds=round(time.monotonic() - started, 2),
            )
    finally:
        await _release_lease(session, keyspace, owner)
    return done


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    label: str
    applied: bool
    applied_at: datetime | None


async def status(
    *, session: CassandraSession, keyspace: str, migrations: list[Migration] | None = None
) -> list[MigrationStatus]:
    """Every known migration and whether (and when) it is applied to ``keyspace``."""
    check_keyspace(keyspace)
    available = load_migrations() if migrations is None else migrations
    when: dict[str, datetime | None] = {}
    if await _table_exists(session, keyspace, "schema_migrations"):
        rows = await session.execute(
            query=f"SELECT version, applied_at FROM {keyspace}.schema_migrations"  # noqa: S608
        )
        when = {str(r["version"]): r["applied_at"] for r in rows}
    known = {m.version for m in available}
    unknown = sorted(set(when) - known, key=int)
    result = [MigrationStatus(m.label, m.version in when, when.get(m.version)) for m in available]
    result += [MigrationStatus(f"{v}_?", True, when[v]) for v in unknown]
    return result
