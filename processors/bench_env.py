"""What the processors' bench scenarios run on: Kafka and Cassandra (given, or started from
the cached jars), a fresh topic prefix and keyspace, an inventory, a worker process, and
uplink records made as the gateway makes them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetgate.errors import UserError
from processors.inventory.logic import VehicleRecord
from processors.settings import ProcessorSettings
from processors.store.repo_inventory import InventoryRepository
from schemas.topics import (
    HEADER_MESSAGE_ID,
    HEADER_RECEIVED_AT,
    HEADER_SENDER,
    HEADER_SOURCE_TOPIC,
    MqttTopics,
)

HOST = "127.0.0.1"
STALL_S = 30.0
APP = "bench-app"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def uplink_headers(*, sender: str, topic: str) -> list[tuple[str, bytes]]:
    """The headers the gateway puts on an uplink record."""
    return [
        (HEADER_MESSAGE_ID, uuid.uuid4().hex.encode()),
        (HEADER_RECEIVED_AT, str(now_ms()).encode()),
        (HEADER_SENDER, sender.encode()),
        (HEADER_SOURCE_TOPIC, topic.encode()),
    ]


@contextlib.asynccontextmanager
async def kafka_node(root: Path, bootstrap: str) -> AsyncIterator[str]:
    """``bootstrap`` if given, else a Kafka started for the run (stopped afterwards)."""
    if bootstrap:
        yield bootstrap
        return
    from fleetgate.settings import default_cache
    from fleetgate.stack import kafka, maven, prereq
    from fleetgate.stack.process import ChildProcess

    java = prereq.require_java()
    lib = maven.resolve(
        name=f"kafka-{kafka.KAFKA_VERSION}",
        coordinates=kafka.MAVEN_COORDINATES,
        cache_dir=default_cache(),
    )
    port, controller = prereq.free_port(), prereq.free_port()
    conf, data = root / "kafka" / "conf", root / "kafka" / "data"
    kafka.write_config(
        conf_dir=conf, data_dir=data, host=HOST, port=port, controller_port=controller
    )
    kafka.format_storage(java=java, lib_dir=lib, conf_dir=conf, data_dir=data)
    child = ChildProcess(
        name="kafka",
        argv=kafka.command(java=java, lib_dir=lib, conf_dir=conf, heap_mb=512),
        log_path=root / "kafka.log",
    )
    child.start()
    try:
        await kafka.wait_ready(bootstrap=f"{HOST}:{port}", timeout_s=120)
        yield f"{HOST}:{port}"
    finally:
        child.stop(timeout_s=30)


@contextlib.asynccontextmanager
async def cassandra_node(root: Path, contact: str) -> AsyncIterator[tuple[str, int]]:
    """``host:port`` if given, else a Cassandra node started for the run."""
    if contact:
        given_host, _, given_port = contact.rpartition(":")
        yield given_host, int(given_port)
        return
    from fleetgate.settings import default_cache
    from fleetgate.stack import cassandra, maven, prereq
    from fleetgate.stack.process import ChildProcess

    java = prereq.require_java()
    lib = maven.resolve(
        name=f"cassandra-{cassandra.CASSANDRA_VERSION}",
        coordinates=cassandra.MAVEN_COORDINATES,
        cache_dir=default_cache(),
    )
    port, storage = prereq.free_port(), prereq.free_port()
    conf, data = root / "cassandra" / "conf", root / "cassandra" / "data"
    cassandra.write_config(
        conf_dir=conf, data_dir=data, host=HOST, cql_port=port, storage_port=storage
    )
    child = ChildProcess(
        name="cassandra",
        argv=cassandra.command(java=java, lib_dir=lib, conf_dir=conf, data_dir=data, heap_mb=1024),
        log_path=root / "cassandra.log",
    )
    child.start()
    try:
        await cassandra.wait_ready(host=HOST, port=port, timeout_s=300)
        yield HOST, port
    finally:
        child.stop(timeout_s=60)


async def prepare_store(settings: ProcessorSettings, vins: list[str]) -> None:
    """Create the keyspace (every migration) and the bench vehicles, linked to the bench app."""
    from processors.runtime import connect_session
    from processors.store.migrate import migrate
    from processors.store.schema import Replication

    session = await connect_session(settings)
    try:
        keyspace = settings.cassandra.keyspace
        await migrate(session=session, keyspace=keyspace, replication=Replication())
        repo = InventoryRepository(session=session, keyspace=keyspace)
        slots = asyncio.Semaphore(64)

        async def add(vin: str) -> None:
            async with slots:
                await repo.upsert(record=VehicleRecord(vin=vin, model="bench"), now_ms=now_ms())
                await repo.link(vin=vin, app_id=APP, now_ms=now_ms())

        await asyncio.gather(*(add(v) for v in vins))
    finally:
        await session.close()


async def drop_keyspace(settings: ProcessorSettings) -> None:
    from processors.runtime import connect_session

    session = await connect_session(settings)
    try:
        await session.execute(
            query=f"DROP KEYSPACE IF EXISTS {settings.cassandra.keyspace}",
            prepared=False,
            timeout_s=60,
        )
    finally:
        await session.close()


def settings_env(settings: ProcessorSettings) -> dict[str, str]:
    """Environment variables that give a ``python -m processors`` these settings."""
    env = {
        "FLEETGATE_HOME": str(settings.home),
        "FLEETGATE_LOG_LEVEL": settings.log_level,
        "FLEETGATE_LOG_FORMAT": "json",
        "FLEETGATE_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
        "FLEETGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "FLEETGATE_KAFKA__PARTITIONS": str(settings.kafka.partitions),
        "FLEETGATE_CASSANDRA__HOSTS": ",".join(settings.cassandra.hosts),
        "FLEETGATE_CASSANDRA__PORT": str(settings.cassandra.port),
        "FLEETGATE_CASSANDRA__KEYSPACE": settings.cassandra.keyspace,
    }
    for name, value in settings.processors.model_dump().items():
        if value is not None:
            env[f"FLEETGATE_PROCESSORS__{name.upper()}"] = str(value)
    return env


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, settings: ProcessorSettings, log: Path) -> WorkerProcess:
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "processors"],
                env={**os.environ, **settings_env(settings)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(process, log)

    async def wait_assigned(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "partitions assigned" in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"the processors worker did not start: {tail}")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the worker has used (Linux ``/proc``; else None)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --------------------------------------------------------------------------------------------
# scenario helpers


def parse_params(params: dict[str, str], defaults: dict[str, str]) -> dict[str, Any]:
    unknown = set(params) - set(defaults)
    if unknown:
        raise UserError(f"unknown parameter(s) {sorted(unknown)}; known: {sorted(defaults)}")
    merged: dict[str, Any] = defaults | params
    for key, value in merged.items():
        if key not in ("bootstrap", "cassandra"):
            try:
                merged[key] = int(value)
            except ValueError:
                raise UserError(f"parameter {key}={value!r} is not a whole number") from None
            if merged[key] < 1:
                raise UserError(f"parameter {key} must be at least 1")
    return merged


def free_port() -> int:
    from fleetgate.stack import prereq

    return prereq.free_port()


async def write_telemetry(bootstrap: str, topic: str, vins: list[str], messages: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        per_vehicle = -(-messages // len(vins))
        sent = 0
        for seq in range(per_vehicle):
            for vin in vins:
                if sent == messages:
                    break
                body = json.dumps(
                    {"ts": now_ms(), "seq": seq, "signals": {"speed": 50.5, "soc": 80}}
                )
                headers = uplink_headers(sender=f"vehicle:{vin}", topic=MqttTopics.telemetry(vin))
                await producer.send(topic, body.encode(), key=vin.encode(), headers=headers)
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()


async def read_metrics(port: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    values: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("fleetgate_telemetry_") and "_total " in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def raw_read(bootstrap: str, topic: str, messages: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"raw-{uuid.uuid4().hex[:6]}")  # fmt: skip
    await consumer.start()
    try:
        seen, started = 0, time.perf_counter()
        while seen < messages:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            seen += sum(len(r) for r in batch.values())
        return messages / (time.perf_counter() - started)
    finally:
        await consumer.stop()
