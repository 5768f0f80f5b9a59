"""Data set-up on a running stack: Kafka topics and the Cassandra schema (both idempotent)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fleetgate.logs import get_logger
from fleetgate.settings import CassandraConnection, KafkaConnection
from fleetgate.stack import kafka

log = get_logger(__name__)


async def create_topics(*, conn: KafkaConnection) -> list[str]:
    """Every topic the project uses (named by ``schemas.topics``), created if missing."""
    from schemas.topics import KafkaTopics

    created = await kafka.create_topics(
        bootstrap=conn.bootstrap,
        names=KafkaTopics(conn.topic_prefix).all(),
        partitions=conn.partitions,
        replication_factor=conn.replication_factor,
    )
    log.info("kafka topics", created=len(created), prefix=conn.topic_prefix)
    return created


async def migrate(*, conn: CassandraConnection) -> list[str]:
    """Create the keyspace if needed and apply the pending migrations (idempotent)."""
    from processors.store.migrate import migrate as apply
    from processors.store.schema import Replication
    from processors.store.session import CassandraSession

    session = CassandraSession()
    await session.connect(hosts=conn.hosts, port=conn.port, keyspace=None, local_dc=conn.local_dc)
    try:
        applied = await apply(
            session=session,
            keyspace=conn.keyspace,
            replication=Replication.from_connection(conn),
        )
    finally:
        await session.close()
    log.info("cassandra schema", keyspace=conn.keyspace, applied=applied)
    return applied


async def prepare_data(settings: object) -> None:
    from fleetgate.stack.settings import StackSettings

    assert isinstance(settings, StackSettings)
    kafka_conn = settings.kafka.model_copy(update={"bootstrap": settings.kafka_bootstrap})
    cass_conn = settings.cassandra.model_copy(
        update={"hosts": [settings.host], "port": settings.cassandra_port}
    )
    await create_topics(conn=kafka_conn)
    await migrate(conn=cass_conn)


def ensure_pki(home: Path) -> None:
    """The PKI under ``home`` (created if missing; CRL and server certificate renewed when due),
    with the lifetimes and SANs of the ``FLEETGATE_PKI__*`` settings."""
    from certs.settings import CertsSettings
    from certs.store import ensure_pki as ensure
    from fleetgate.settings import load_settings

    policy = load_settings(CertsSettings).pki
    ensure(home, lifetimes=policy.lifetimes(), server_sans=tuple(policy.server_sans))


async def keep_pki_fresh(home: Path, *, every_s: float = 3600.0) -> None:
    """Renew the CRL before it expires (brokers re-read ``pki/crl.pem`` when it changes)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(ensure_pki, home)
        except Exception as exc:  # keep the stack running; say why
            log.error("pki upkeep failed", error=str(exc))
