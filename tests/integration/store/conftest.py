"""Fixtures of the storage tests, on top of the session-wide ``cassandra_contact`` and
``keyspace`` of tests/conftest.py (a real node: FLEETGATE_TEST_CASSANDRA=host:port, else one
started for the run)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from processors.store.migrate import migrate
from processors.store.schema import Replication
from processors.store.session import CassandraSession


@pytest.fixture(scope="session")
async def admin_session(cassandra_contact: tuple[str, int]) -> AsyncIterator[CassandraSession]:
    """A session without a keyspace: creates and drops keyspaces, runs migrations."""
    host, port = cassandra_contact
    session = CassandraSession()
    await session.connect(hosts=[host], port=port, keyspace=None, timeout_s=30)
    yield session
    await session.close()


@pytest.fixture(scope="session")
async def migrated_keyspace(admin_session: CassandraSession, keyspace: str) -> str:
    """The run's keyspace with every migration applied."""
    await migrate(session=admin_session, keyspace=keyspace, replication=Replication())
    return keyspace


@pytest.fixture(scope="session")
async def store(
    cassandra_contact: tuple[str, int], migrated_keyspace: str
) -> AsyncIterator[CassandraSession]:
    """A session bound to the migrated keyspace, as a processor holds one."""
    host, port = cassandra_contact
    session = CassandraSession()
    await session.connect(hosts=[host], port=port, keyspace=migrated_keyspace, timeout_s=30)
    yield session
    await session.close()
