"""One stack per module: PKI, embedded broker, gateway, a processors worker, on the session's
Kafka and Cassandra (own topic prefix and keyspace)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from certs.layout import PkiPaths
from gateway.service import Gateway
from gateway.settings import GatewaySettings
from processors.inventory.logic import VehicleRecord
from processors.settings import ProcessorSettings
from processors.store.migrate import migrate
from processors.store.repo_inventory import InventoryRepository
from processors.store.schema import Replication
from processors.store.session import CassandraSession
from processors.worker import preflight
from tests.e2e.processors.support import APP, HOST, VINS, Worker, make_pki
from tests.support.brokers import BrokerProcess, start_broker

PARTITIONS = 4


@dataclass
class Stack:
    home: Path
    paths: PkiPaths
    broker: BrokerProcess[PkiPaths]
    env: dict[str, str]
    session: CassandraSession
    keyspace: str
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self) -> Worker:
        worker = Worker(self.env, self.home / f"processors-{len(self.workers)}.log")
        self.workers.append(worker)
        return worker


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str,
    cassandra_contact: tuple[str, int],
    keyspace: str,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Stack]:
    home = tmp_path_factory.mktemp("e2e-processors")
    paths = make_pki(home)
    host, port = cassandra_contact
    prefix = f"e{run_id}.{abs(hash(request.module.__name__)) % 10**6}."
    space = f"{keyspace}_e2e"
    env = {
        "FLEETGATE_HOME": str(home),
        "FLEETGATE_LOG_FORMAT": "json",
        "FLEETGATE_LOG_LEVEL": "INFO",
        "FLEETGATE_KAFKA__BOOTSTRAP": kafka_bootstrap,
        "FLEETGATE_KAFKA__TOPIC_PREFIX": prefix,
        "FLEETGATE_KAFKA__PARTITIONS": str(PARTITIONS),
        "FLEETGATE_CASSANDRA__HOSTS": host,
        "FLEETGATE_CASSANDRA__PORT": str(port),
        "FLEETGATE_CASSANDRA__KEYSPACE": space,
        "FLEETGATE_PROCESSORS__SHADOW_WRITE_INTERVAL_S": "3.0",
        "FLEETGATE_PROCESSORS__COMMAND_RESULT_GRACE_S": "1.0",
    }
    session = CassandraSession()
    await session.connect(hosts=[host], port=port, keyspace=None, timeout_s=30)
    await migrate(
        session=session,
        keyspace=space,
        replication=Replication(),
    )
    inventory = InventoryRepository(session=session, keyspace=space)
    for vin in VINS:
        now = time.time_ns() // 1_000_000
        await inventory.upsert(record=VehicleRecord(vin=vin, model="e2e"), now_ms=now)
        await inventory.link(vin=vin, app_id=APP, now_ms=now)
    settings = ProcessorSettings.model_validate(
        {
            "home": home,
            "kafka": {
                "bootstrap": kafka_bootstrap,
                "topic_prefix": prefix,
                "partitions": PARTITIONS,
            },
            "cassandra": {"hosts": [host], "port": port, "keyspace": space},
        }
    )
    await preflight(settings)
    broker = start_broker("amqtt", paths)
    gateway = Gateway(
        settings=GatewaySettings(
            home=home,
            kafka={"bootstrap": kafka_bootstrap, "topic_prefix": prefix, "partitions": PARTITIONS},
            mqtt={"host": HOST, "port": broker.port, "client_name": "gateway"},
            gateway={"metrics_port": 0},
        )
    )
    stop = asyncio.Event()
    gateway_task = asyncio.ensure_future(gateway.run(stop=stop))
    built = Stack(home, paths, broker, env, session, space)
    try:
        await asyncio.wait_for(gateway.ready.wait(), 90)
        worker = built.start_worker()
        await worker.wait_assigned()
        yield built
    finally:
        for worker in built.workers:
            worker.stop()
        stop.set()
        await asyncio.wait_for(gateway_task, 60)
        broker.stop()
        await session.close()
