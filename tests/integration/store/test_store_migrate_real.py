"""Migrations against a real Cassandra: a fresh keyspace, concurrent and repeated runs,
an edited migration refused, and ``fleetgate db migrate | status``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import typer
from typer.testing import CliRunner

from fleetgate.errors import UserError
from processors.store import cli
from processors.store.migrate import load_migrations, migrate, status
from processors.store.schema import Migration, MigrationError, Replication
from processors.store.session import CassandraSession

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh_keyspace(admin_session: CassandraSession, keyspace: str) -> AsyncIterator[str]:
    """A keyspace that does not exist yet; dropped afterwards."""
    name = f"{keyspace}_mig"
    await admin_session.execute(query=f"DROP KEYSPACE IF EXISTS {name}", prepared=False)
    yield name
    await admin_session.execute(
        query=f"DROP KEYSPACE IF EXISTS {name}", prepared=False, timeout_s=60
    )


async def test_migrate_fresh_keyspace_concurrently_then_again(
    cassandra_contact: tuple[str, int], admin_session: CassandraSession, fresh_keyspace: str
) -> None:
    host, port = cassandra_contact
    other = CassandraSession()
    await other.connect(hosts=[host], port=port, keyspace=None)
    try:
        results = await asyncio.gather(
            migrate(session=admin_session, keyspace=fresh_keyspace, replication=Replication()),
            migrate(session=other, keyspace=fresh_keyspace, replication=Replication()),
        )
    finally:
        await other.close()
    shipped = [m.label for m in load_migrations()]
    assert shipped[0] == "0001_initial"
    # the schema lock makes one of them apply everything and the other find nothing left to do
    assert sorted(results) == [[], shipped]
    again = await migrate(session=admin_session, keyspace=fresh_keyspace, replication=Replication())
    assert again == []

    rows = await admin_session.execute(
        query="SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
        params=(fresh_keyspace,),
    )
    tables = {r["table_name"] for r in rows}
    assert {"vehicles", "shadows", "commands", "schema_migrations", "artifacts"} <= tables
    [ks] = await admin_session.execute(
        query="SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
        params=(fresh_keyspace,),
    )
    assert ks["replication"]["class"].endswith("SimpleStrategy")
    report = await status(session=admin_session, keyspace=fresh_keyspace)
    assert [(s.label, s.applied) for s in report] == [(label, True) for label in shipped]
    assert all(s.applied_at is not None for s in report)


async def test_new_migrations_apply_and_edited_ones_are_refused(
    admin_session: CassandraSession, fresh_keyspace: str
) -> None:
    shipped = load_migrations()
    extra = Migration(
        version="9001",
        name="test_extra",
        text="CREATE TABLE IF NOT EXISTS ${keyspace}.extra (k text PRIMARY KEY, v int);",
    )
    first = await migrate(
        session=admin_session,
        keyspace=fresh_keyspace,
        replication=Replication(),
        migrations=[*shipped, extra],
    )
    assert first == [*(m.label for m in shipped), "9001_test_extra"]
    await admin_session.execute(
        query=f"INSERT INTO {fresh_keyspace}.extra (k, v) VALUES (?, ?)", params=("a", 1)
    )
    edited = Migration(version="9001", name="test_extra", text=extra.text + "\n-- edited")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(
            session=admin_session,
            keyspace=fresh_keyspace,
            replication=Replication(),
            migrations=[*shipped, edited],
        )
    with pytest.raises(MigrationError, match="does not know: 9001"):
        await migrate(session=admin_session, keyspace=fresh_keyspace, replication=Replication())
    # the failed runs released the schema lock: a correct run goes straight through
    again = await migrate(
        session=admin_session,
        keyspace=fresh_keyspace,
        replication=Replication(),
        migrations=[*shipped, extra],
        lock_wait_s=0,
    )
    assert again == []


def _app() -> typer.Typer:
    app = typer.Typer()
    cli.register(app)

    @app.callback()
    def root() -> None:
        """fleetgate (test root)."""

    return app


@pytest.fixture
def cli_env(cassandra_contact: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    host, port = cassandra_contact
    monkeypatch.setenv("FLEETGATE_CASSANDRA__HOSTS", f'["{host}"]')
    monkeypatch.setenv("FLEETGATE_CASSANDRA__PORT", str(port))


@pytest.mark.usefixtures("cli_env")
def test_cli_migrate_and_status(migrated_keyspace: str) -> None:
    runner = CliRunner()
    done = runner.invoke(_app(), ["db", "migrate", "--keyspace", migrated_keyspace])
    assert done.exit_code == 0, done.output
    assert "nothing to apply" in done.output
    shown = runner.invoke(_app(), ["db", "status", "--keyspace", migrated_keyspace])
    assert shown.exit_code == 0, shown.output
    assert "0001_initial" in shown.output
    assert "applied" in shown.output
    pending = runner.invoke(_app(), ["db", "status", "--keyspace", f"{migrated_keyspace}_none"])
    assert pending.exit_code == 1
    assert "pending" in pending.output


@pytest.mark.usefixtures("cli_env")
def test_cli_bad_input_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    bad = runner.invoke(_app(), ["db", "migrate", "--keyspace", "Bad-Name"])
    assert isinstance(bad.exception, UserError)
    assert "invalid keyspace" in str(bad.exception)
    monkeypatch.setenv("FLEETGATE_CASSANDRA__REPLICATION", "network")
    no_dc = runner.invoke(_app(), ["db", "migrate"])
    assert isinstance(no_dc.exception, UserError)
    assert "datacenter" in str(no_dc.exception)
    monkeypatch.setenv("FLEETGATE_CASSANDRA__PORT", "1")
    down = runner.invoke(_app(), ["db", "status"])
    assert isinstance(down.exception, UserError)
    assert down.exception.exit_code == 3
