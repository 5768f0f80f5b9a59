"""Fixtures of the processors' integration tests: the run's real Cassandra (a keyspace of
their own, every migration applied, the processors' proposed one included) and Kafka (a
topic prefix per test)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from fleetgate.settings import CassandraConnection, KafkaConnection
from processors.settings import ProcessorSettings, ProcessorTuning
from processors.store.migrate import migrate
from processors.store.schema import Replication
from processors.store.session import CassandraSession
from processors.worker import preflight


@pytest.fixture(scope="session")
async def proc_session(cassandra_contact: tuple[str, int]) -> AsyncIterator[CassandraSession]:
    host, port = cassandra_contact
    session = CassandraSession()
    await session.connect(hosts=[host], port=port, keyspace=None, timeout_s=30)
    yield session
    await session.close()


@pytest.fixture(scope="session")
async def proc_keyspace(proc_session: CassandraSession, keyspace: str) -> str:
    """A keyspace of this run for the processors, with every migration applied."""
    name = f"{keyspace}_proc"
    await migrate(
        session=proc_session,
        keyspace=name,
        replication=Replication(),
    )
    return name


SettingsFactory = Callable[..., ProcessorSettings]


@pytest.fixture
def make_settings(
    kafka_bootstrap: str,
    cassandra_contact: tuple[str, int],
    proc_keyspace: str,
    topic_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> SettingsFactory:
    """Settings for a worker on this test's topics and the processors' keyspace."""
    host, port = cassandra_contact

    def make(**tuning: object) -> ProcessorSettings:
        return ProcessorSettings(
            home=tmp_path_factory.mktemp("home"),
            log_level="WARNING",
            kafka=KafkaConnection(
                bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4
            ),
            cassandra=CassandraConnection(hosts=[host], port=port, keyspace=proc_keyspace),
            processors=ProcessorTuning.model_validate(
                {
                    "shadow_write_interval_s": 0.2,
                    "telemetry_write_interval_s": 0.2,
                    "command_result_grace_s": 1.0,
                    **tuning,
                }
            ),
        )

    return make


@pytest.fixture
async def settings(make_settings: SettingsFactory) -> ProcessorSettings:
    """Settings whose Kafka topics exist."""
    s = make_settings()
    await preflight(s)
    return s


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    return str(uuid.uuid4())
